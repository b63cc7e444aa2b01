"""Each fault case at two sizes: a small one that `make test` runs on every change, and the
full one the issue asks for, marked `faults` so only `make test-faults` runs it.

    @pytest.mark.parametrize("size", sized(small=Crash(10), full=Crash(50)))
    async def test_a_case(size: Crash) -> None: ...
"""

from __future__ import annotations

from typing import Any

import pytest


def sized(*, small: Any, full: Any) -> list[Any]:
    """The two sizes as pytest parameters, named `small` and `full`."""
    return [
        pytest.param(small, id="small"),
        pytest.param(full, id="full", marks=pytest.mark.faults),
    ]
