"""A real Chromium driven by Playwright, for tests whose server runs in the test's own trio
loop.

Playwright's sync API belongs to the thread that started it, and it blocks while it waits for
the page; the service under test must go on serving meanwhile. So the browser lives in one
thread of its own, and a test hands it work: `await browser.run(lambda page: ...)` runs the
function there and gives back its result without blocking trio.

The browser is Debian's Chromium (or whatever `CHROMIUM` names); `.ci/run` installs it. Where
it is missing the tests are skipped with the reason, except under REQUIRE_SERVICES=1 (CI),
where they fail.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

T = TypeVar("T")

# Screenshots the tests take, kept after the run (CI can upload the folder).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"

CHROMIUM_FLAGS = [
    "--no-sandbox",  # containers and CI runners seldom allow Chromium's sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def find_chromium() -> str | None:
    """CHROMIUM, or the first Chromium (or Chrome) on the PATH."""
    candidates = [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    for name in candidates:
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def chromium_path() -> str:
    found = find_chromium()
    if found:
        return found
    reason = "Chromium is not installed (apt-get install chromium, or set CHROMIUM)"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)")
    pytest.skip(reason)


class BrowserThread:
    """One Chromium, in one thread, for the whole session; each test opens its own context
    (so its own sessionStorage) with `new_page`."""

    def __init__(self, executable: str) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._started: Future[Browser] = Future()
        self._thread = threading.Thread(
            target=self._main, args=(executable,), name="chromium", daemon=True
        )
        self._thread.start()
        self.browser = self._started.result(timeout=60)

    def _main(self, executable: str) -> None:
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=executable, args=CHROMIUM_FLAGS
                )
                self._started.set_result(browser)
                while (job := self._jobs.get()) is not None:
                    work, result = job
                    try:
                        result.set_result(work())
                    except BaseException as exc:  # handed back to the test
                        result.set_exception(exc)
                browser.close()
        except BaseException as exc:  # Chromium failed to start
            if not self._started.done():
                self._started.set_exception(exc)
            raise

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work(*args)` in the browser's thread; its exceptions are raised here."""
        result: Future[T] = Future()
        self._jobs.put((lambda: work(*args), result))
        return await trio.to_thread.run_sync(result.result, abandon_on_cancel=True)

    async def new_page(
        self, base_url: str, *, width: int = 1280, height: int = 900, dark: bool = False
    ) -> Page:
        def open_page() -> Page:
            context: BrowserContext = self.browser.new_context(
                base_url=base_url,
                viewport={"width": width, "height": height},
                color_scheme="dark" if dark else "light",
            )
            context.set_default_timeout(10_000)
            page = context.new_page()
            page.on("dialog", lambda dialog: dialog.accept())
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.errors = errors  # type: ignore[attr-defined]
            return page

        return await self.run(open_page)

    async def close_page(self, page: Page) -> None:
        await self.run(page.context.close)

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)


def page_errors(page: Page) -> list[str]:
    """The uncaught script errors the page has had so far."""
    return list(page.errors)  # type: ignore[attr-defined]


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
