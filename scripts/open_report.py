"""Open a local report (the HTML coverage report) in a browser, when the machine has one."""

from __future__ import annotations

import sys
import webbrowser
from pathlib import Path


def main(path: str) -> int:
    report = Path(path).resolve()
    if not report.is_file():
        print(f"no report at {report}", file=sys.stderr)
        return 1
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        print(f"no browser found; open {report}")
        return 0
    browser.open(report.as_uri())
    print(f"opened {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "htmlcov/index.html"))
