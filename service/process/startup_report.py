"""The block of lines a start logs: what this process is about to serve, and with what.

An operator reads it to see at once whether the mock answers or a real provider does, which
ensemble runs, where conversations are kept and what guards the door. It names hosts and
files only: never a key, a password or a whole URL.

    log_startup(settings, ensembles)

    starting: http://0.0.0.0:8080, 1 worker
      models:   the mock (USE_LLM_MOCK=true): canned answers, no provider is called
      ensemble: service/ensemble/default.toml: agents llm-1, llm-2; summarizer llm-combine
      store:    SQLite data/fanout.db, schema 0001
      auth:     none (every caller is anonymous)
      limits:   off
      redis:    off
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..ensemble import Ensemble, LoadedEnsembles, Member
from ..settings import Settings
from ..storage.migrate import head_revision

log = logging.getLogger("service.start")


def host_of(url: str) -> str:
    """`host:port` of `url`, without its user, password, path or query."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if not host:
        return parts.scheme or "?"
    return f"{host}:{port}" if port is not None else host


def _address(settings: Settings) -> str:
    workers = "1 worker" if settings.workers == 1 else f"{settings.workers} workers"
    return f"http://{settings.http_addr.for_hypercorn()}, {workers}"


def _members(ensemble: Ensemble) -> str:
    def named(member: Member) -> str:
        return f"{member.name} ({member.model})" if member.model else member.name

    agents = ", ".join(named(agent) for agent in ensemble.agents)
    shown = f"agents {agents}"
    if ensemble.summarizer is not None:
        shown += f"; {ensemble.summarizer_role} {named(ensemble.summarizer)}"
    if ensemble.strategy != "summarize":
        shown += f"; strategy {ensemble.strategy}"
    return f"{shown}; {ensemble.calls_per_request} calls per request"


def _models(settings: Settings, ensembles: LoadedEnsembles) -> str:
    if settings.use_llm_mock:
        return "the mock (USE_LLM_MOCK=true): canned answers, no provider is called"
    hosts: dict[str, str] = {}
    for ensemble in ensembles.ensembles.values():
        for name, provider in ensemble.used_providers().items():
            hosts.setdefault(name, host_of(str(provider.base_url)))
    shown = ", ".join(f"{host} ({name})" for name, host in sorted(hosts.items()))
    return f"a real provider: {shown}"


def _ensembles(ensembles: LoadedEnsembles) -> list[str]:
    if len(ensembles.ensembles) == 1:
        (ensemble,) = ensembles.ensembles.values()
        return [f"ensemble: {ensembles.source}: {_members(ensemble)}"]
    lines = [f"ensemble: {ensembles.source}, {ensembles.default!r} by default"]
    lines.extend(
        f"  {name}: {_members(ensemble)}" for name, ensemble in sorted(ensembles.ensembles.items())
    )
    return lines


def _store(settings: Settings) -> str:
    if not settings.storage_enabled:
        return "none (DATABASE_URL=none): nothing is kept"
    try:
        url = make_url(settings.database_url.get_secret_value())
    except ArgumentError:  # the start already refused it; never echo it here
        return "?"
    # The start migrated the schema before this is logged (or refused to start).
    schema = f"schema {head_revision()}"
    if url.get_backend_name() == "sqlite":
        return f"SQLite {url.database or ':memory:'}, {schema}"
    where = url.host or "local socket"
    if url.port is not None:
        where = f"{where}:{url.port}"
    return f"PostgreSQL at {where}, database {url.database or '(default)'}, {schema}"


def _auth(settings: Settings) -> str:
    if not settings.auth_modes:
        return "none (every caller is anonymous)"
    return ", ".join(sorted(settings.auth_modes))


def _limits(settings: Settings) -> str:
    if settings.limits_file is None:
        return "off"
    shared = "shared in Redis" if settings.redis_url is not None else "in this process"
    return f"on ({settings.limits_file}, {shared})"


def _redis(settings: Settings) -> str:
    if settings.redis_url is None:
        return "off"
    return f"on ({host_of(settings.redis_url.get_secret_value())})"


def startup_lines(settings: Settings, ensembles: LoadedEnsembles) -> list[str]:
    """The block's lines, in the order they are logged."""
    return [
        f"starting: {_address(settings)}",
        f"  models:   {_models(settings, ensembles)}",
        *(f"  {line}" for line in _ensembles(ensembles)),
        f"  store:    {_store(settings)}",
        f"  auth:     {_auth(settings)}",
        f"  limits:   {_limits(settings)}",
        f"  redis:    {_redis(settings)}",
    ]


def log_startup(settings: Settings, ensembles: LoadedEnsembles) -> None:
    """Log the block, once per start: a worker of WORKERS > 1 leaves it to its parent."""
    if settings.fanout_listen_fd is not None:
        return
    for line in startup_lines(settings, ensembles):
        log.info("%s", line)
