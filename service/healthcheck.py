"""python -m service.healthcheck: exit 0 when the local server answers GET /healthz.

Used by the Docker HEALTHCHECK; it reads HTTP_ADDR the same way the server does.
"""

from __future__ import annotations

import sys
import urllib.request

from .settings import SettingsError, load_settings


def main() -> int:
    try:
        port = load_settings().http_addr.port
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
