"""scripts/screenshots.py, the maker of the README's pictures, run whole into a folder of
the test's own: four PNGs of the sizes it promises (a desktop's, a phone's)."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import trio

from tests.web.browser import chromium_path

ROOT = Path(__file__).resolve().parents[2]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", header[16:24])
    return width, height


async def test_the_screenshot_script_makes_a_desktop_and_a_phone_picture(tmp_path: Path) -> None:
    chromium_path()  # skipped (or failed under REQUIRE_SERVICES=1) without a Chromium
    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, "-m", "scripts.screenshots", "--out", str(tmp_path)],
            cwd=ROOT,
            # The mock at a tenth of its pace: the same pictures' shapes, sooner.
            env={**os.environ, "MOCK_FIRST_TOKEN_MS": "25", "MOCK_TOKEN_MS": "2.5"},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    made = done.stdout.decode().split()
    assert [Path(path).name for path in made] == [
        "web-page-council.png",
        "web-page-sixteen.png",
        "web-page.png",
        "web-page-phone.png",
    ]
    for name in ("web-page.png", "web-page-council.png", "web-page-sixteen.png"):
        assert png_size(tmp_path / name) == (1280, 860)
    assert png_size(tmp_path / "web-page-phone.png") == (390, 844)
