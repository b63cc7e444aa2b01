"""`python -m service` says at start what it serves and with what, in one block: the mock or
the provider's host, the ensemble and its members, the store, AUTH, limits, Redis; never a
key or a password, and no line of Alembic's repeated (or at all: one summary is ours)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from service.storage.migrate import head_revision
from tests.databases import REDIS_URL, postgres_schema, redis_reachable
from tests.service_process import served

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"service\.start: (.*)")


def start_block(log: bytearray) -> list[str]:
    """The block's lines, in order, without their time and logger."""
    return [match.group(1) for match in BLOCK.finditer(log.decode())]


async def test_the_defaults_say_the_mock_the_ensemble_the_store_and_that_guards_are_off(
    tmp_path: Path,
) -> None:
    async with served(tmp_path) as service:
        log = bytes(service.log)
    block = start_block(bytearray(log))
    default_ensemble = ROOT / "service" / "ensemble" / "default.toml"
    assert block == [
        "starting: http://127.0.0.1:0, 1 worker",
        "  models:   the mock (USE_LLM_MOCK=true): canned answers, no provider is called",
        f"  ensemble: {default_ensemble}: agents llm-1 (mock), llm-2 (mock); "
        "summarizer llm-combine (mock); 3 calls per request",
        f"  store:    SQLite data/fanout.db, schema {head_revision()}",
        "  auth:     none (every caller is anonymous)",
        "  limits:   off",
        "  redis:    off",
    ]
    assert log.count(b"service.start: ") == len(block)
    # Alembic's "Context impl" lines came three times per start: each migration context
    # made logs one.
    assert b"alembic" not in log


PASSWORD = "pg-s3cret-pw"
KEY = "sk-live-key-9f8e7d6c5b4a"
URL_SECRET = "url-s3cret"


async def test_a_real_provider_postgres_and_redis_are_named_by_host_only(tmp_path: Path) -> None:
    await redis_reachable()
    limits = tmp_path / "limits.toml"
    limits.write_text("[default]\nrequests_per_minute = 60\n")
    with postgres_schema() as url:
        with_password = url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
        assert PASSWORD in with_password
        env = {
            "USE_LLM_MOCK": "false",
            "LLM_KEY": KEY,
            "LLM_BASE_URL": f"https://proxy:{URL_SECRET}@llm.example.test/v1",
            "DATABASE_URL": with_password,
            "AUTH": "keys",
            "LIMITS_FILE": str(limits),
            "REDIS_URL": REDIS_URL,
        }
        async with served(tmp_path, **env) as service:
            log = service.log.decode()
    block = start_block(bytearray(log.encode()))
    assert block[1] == "  models:   a real provider: llm.example.test (default)"
    assert block[2].endswith(
        "agents llm-1 (gpt-4o-mini), llm-2 (gpt-4o-mini); summarizer llm-combine (gpt-4o-mini);"
        " 3 calls per request"
    )
    postgres, redis = make_url(url), urlsplit(REDIS_URL)
    postgres_at = f"{postgres.host}:{postgres.port}" if postgres.port else postgres.host
    redis_at = f"{redis.hostname}:{redis.port}" if redis.port else redis.hostname
    assert block[3] == (
        f"  store:    PostgreSQL at {postgres_at}, "
        f"database {postgres.database}, schema {head_revision()}"
    )
    assert block[4:] == [
        "  auth:     keys",
        f"  limits:   on ({limits}, shared in Redis)",
        f"  redis:    on ({redis_at})",
    ]
    for secret in (PASSWORD, KEY, URL_SECRET):
        assert secret not in log
    assert "alembic" not in log
