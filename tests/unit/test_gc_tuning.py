"""The collector is off while the service starts and on, spaced out, once it serves."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from service.process.gc_tuning import (
    MIDDLE_EVERY,
    OLD_EVERY,
    YOUNG_EVERY,
    pause_for_start_up,
    tune_for_serving,
)


@pytest.fixture
def gc_state() -> Iterator[None]:
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if enabled:
        gc.enable()


@pytest.mark.usefixtures("gc_state")
def test_start_up_pauses_the_collector_and_serving_turns_it_on_spaced_out() -> None:
    pause_for_start_up()
    assert not gc.isenabled()
    tune_for_serving()
    assert gc.isenabled()
    assert gc.get_threshold() == (YOUNG_EVERY, MIDDLE_EVERY, OLD_EVERY)
    assert gc.get_freeze_count() > 0
