"""The README's pictures of the page, made again: the service with the mock, Chromium driven
by Playwright at a desktop's and a phone's width, light theme, PNGs in docs/images.

The ensembles pictured: the mock-failures example (a retry, a fallback, a straggler cut, a
summary that restarts), the council example and sixteen members (the strip of tiles); the
default one is served too, as a folder of ensembles needs. Each has made-up prices: the
mock is free, and the pictures show the page's dollars, the wasted part among them.

    python -m scripts.screenshots              # or: make screenshots
    python -m scripts.screenshots --out /tmp/shots

Needs the dev tools (Playwright) and Chromium (make browser). Nothing leaves the machine:
the service runs the mock on 127.0.0.1, and the browser starts with its network features off.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from tests.web.browser import CHROMIUM_FLAGS, find_chromium

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
RUNNING_ON = re.compile(r"Running on (http://[\d.]+:\d+)")
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
# Made up (per million tokens), for every model the mock plays in these ensembles.
PRICES = "".join(
    f'\n[prices."{model}"]\ninput_per_million = 2.50\noutput_per_million = 10.00\n'
    for model in ("mock", "mock:flaky", "mock:unavailable", "mock:stall", "mock:cut")
)
SIXTEEN = (
    "".join(
        f'[[agents]]\nname = "member-{n:02}"\nsystem_prompt = "Answer briefly."\n\n'
        for n in range(1, 17)
    )
    + '[summarizer]\nname = "combine"\nsystem_prompt = "Combine the answers."\n'
)


def chromium() -> str:
    found = find_chromium()
    if found is None:
        raise SystemExit("Chromium is not installed: make browser (or set CHROMIUM)")
    return found


@contextmanager
def service(folder: Path) -> Iterator[str]:
    """`python -m service` with the mock, the ensembles of the pictures (priced) and a
    database of its own; yields its address."""
    ensembles = folder / "ensembles"
    ensembles.mkdir()
    sources = {
        "default": ROOT / "service" / "ensemble" / "default.toml",
        "council": ROOT / "examples" / "council.toml",
        "mock-failures": ROOT / "examples" / "mock-failures.toml",
    }
    for name, source in sources.items():
        (ensembles / f"{name}.toml").write_text(source.read_text() + PRICES)
    (ensembles / "sixteen.toml").write_text(SIXTEEN + PRICES)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLM_", "AUTH", "LIMITS_", "REDIS_", "DATABASE_", "ENSEMBLE_"))
    }
    env |= {
        "USE_LLM_MOCK": "true",
        "HTTP_ADDR": "127.0.0.1:0",
        "DATABASE_URL": f"sqlite:///{folder / 'fanout.db'}",
        "ENSEMBLE_FILE": str(ensembles),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        log = []
        for line in process.stderr:
            log.append(line)
            if match := RUNNING_ON.search(line):
                break
        else:
            raise SystemExit("the service did not start:\n" + "".join(log))
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)


def ask(page: Page, ensemble: str, question: str) -> None:
    turns = page.locator("#thread > .turn").count()
    page.select_option("#ensemble", ensemble)
    page.fill("#question", question)
    page.press("#question", "Enter")
    page.wait_for_function(
        """(n) => { const turns = document.querySelectorAll("#thread > .turn");
            return turns.length === n && turns[n - 1].dataset.state === "done"; }""",
        arg=turns + 1,
    )


def shoot(url: str, out: Path) -> list[Path]:
    made = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        desktop = browser.new_page(base_url=url, viewport=DESKTOP, color_scheme="light")
        desktop.goto("/")
        desktop.wait_for_selector("#ensemble option", state="attached")
        # A council and sixteen members first (they wait in the sidebar), then the picture
        # of a turn where things went wrong: its columns, its dollars, the wasted part.
        ask(desktop, "council", "Is a tomato a fruit or a vegetable?")
        council = desktop.locator("#thread > .turn").last
        council.locator(".step[data-phase='review'] > summary").click()
        made.append(out / "web-page-council.png")
        desktop.screenshot(path=str(made[-1]))
        desktop.click("#new-conversation")
        ask(desktop, "sixteen", "What makes a good cup of tea?")
        desktop.evaluate("document.activeElement.blur()")
        made.append(out / "web-page-sixteen.png")
        desktop.screenshot(path=str(made[-1]))
        desktop.click("#new-conversation")
        ask(desktop, "mock-failures", "Why is the sky blue?")
        desktop.evaluate("document.activeElement.blur()")
        made.append(out / "web-page.png")
        desktop.screenshot(path=str(made[-1]))
        # The same turn at a phone's width, the sidebar closed as a phone starts it (drawn
        # live: reopened, a cut column has only its error's code): from the column cut on,
        # the final answer, the dollars and the wasted part.
        desktop.set_viewport_size(PHONE)
        desktop.click("#toggle-sidebar")
        desktop.evaluate("document.activeElement.blur()")
        desktop.locator(".agent[data-state='cut']").evaluate("e => e.scrollIntoView()")
        made.append(out / "web-page-phone.png")
        desktop.screenshot(path=str(made[-1]))
        browser.close()
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNGs go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, service(Path(folder)) as url:
        for path in shoot(url, args.out):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
