from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.web.browser import BrowserThread, chromium_path


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserThread]:
    thread = BrowserThread(chromium_path())
    yield thread
    thread.stop()
