"""Serving: read settings, check the ensemble and the database, then serve until SIGTERM /
SIGINT, in this process (WORKERS=1) or supervising n worker processes (workers.py). Apart
from __main__.py so that `llm-fanout keys ...` does not load the server to make a key.

    sys.exit(serve())
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys

import trio

from ..ensemble import EnsembleError
from ..logs import configure_logging
from ..resources import load_configured_ensembles
from ..settings import Settings, SettingsError, load_settings
from ..storage import StorageStartError, prepare_database
from ..storage.prices import load_prices
from ..telemetry.metrics import prepare_multiprocess_dir
from .gc_tuning import tune_for_serving
from .startup_report import log_startup
from .workers import Supervisor, open_listener

log = logging.getLogger("service")


def warn_when_open_to_anyone(settings: Settings) -> None:
    """AUTH=none with a real provider on an address others can reach: say so, loudly. The
    default binds every interface (a container's port must be reachable), so this is the
    only thing between an operator who forgot AUTH and a stranger spending their key."""
    if settings.use_llm_mock or settings.auth_modes or _loopback(settings.http_addr.host):
        return
    log.warning(
        "AUTH=none and a real provider: anyone who can reach %s spends the provider's key "
        "(LLM_KEY). Set AUTH=keys or AUTH=jwt, or bind to this machine only with "
        "HTTP_ADDR=127.0.0.1:%d",
        settings.http_addr.for_hypercorn(),
        settings.http_addr.port,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve() -> int:
    """The exit code: 2 for a start refused with one line on stderr."""
    listener: socket.socket | None = None
    try:
        settings = load_settings()
        # Fail before binding the port: an invalid ensemble file must stop the start.
        ensembles = load_configured_ensembles(settings)
        if settings.prices_file is not None:
            try:
                load_prices(settings.prices_file)
            except ValueError as exc:
                raise SettingsError(f"PRICES_FILE: {exc}") from exc
            log.warning(
                "PRICES_FILE is deprecated: usage reports' cost_usd prices every call when "
                "its run ends (the ensemble's [prices], else genai-prices' table)"
            )
        if settings.storage_enabled and settings.fanout_listen_fd is None:
            # So is a database that cannot be reached; migrated here once, before workers.
            prepare_database(settings.database_url.get_secret_value()).close()
        if settings.workers > 1:
            # Bound once, here: every worker accepts on it, and HTTP_ADDR=host:0 still works.
            listener = open_listener(settings.http_addr, settings.listen_backlog)
        elif settings.fanout_listen_fd is None:  # a worker's port is its parent's
            open_listener(settings.http_addr, settings.listen_backlog).close()
    except (SettingsError, EnsembleError, StorageStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(level=settings.log_level, production=settings.production)
    log_startup(settings, ensembles)
    if settings.fanout_listen_fd is None:
        # Not in a worker: it would delete the metrics files of the workers started before it.
        prepare_multiprocess_dir()
        warn_when_open_to_anyone(settings)  # once, not once per worker
    if listener is not None:
        tune_for_serving()
        return trio.run(Supervisor(settings, listener).run)
    # Imported here: the parent of WORKERS > 1 never runs the app itself.
    from .server import run_server

    trio.run(run_server, settings)
    return 0
