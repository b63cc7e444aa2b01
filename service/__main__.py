"""python -m service: read settings, check the ensemble, serve until SIGTERM / SIGINT."""

from __future__ import annotations

import socket
import sys

import trio

from .ensemble import EnsembleError
from .logs import configure_logging
from .resources import load_configured_ensembles
from .server import run_server
from .settings import BindAddress, SettingsError, load_settings
from .telemetry.metrics import prepare_multiprocess_dir


def check_can_listen(address: BindAddress) -> None:
    """Raise SettingsError, in one line, when HTTP_ADDR cannot be listened on."""
    try:
        with socket.create_server((address.host, address.port), reuse_port=False):
            pass
    except OSError as exc:
        raise SettingsError(
            f"HTTP_ADDR='{address.for_hypercorn()}': cannot listen there: {exc.strerror or exc}"
        ) from exc


def main() -> int:
    try:
        settings = load_settings()
        # Fail before binding the port: an invalid ensemble file must stop the start.
        load_configured_ensembles(settings)
        check_can_listen(settings.http_addr)
    except (SettingsError, EnsembleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(level=settings.log_level, production=settings.production)
    prepare_multiprocess_dir()
    trio.run(run_server, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
