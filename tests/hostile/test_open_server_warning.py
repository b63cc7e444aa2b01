"""A server anyone can reach, without authentication, in front of a real provider says so
at start: anyone who reaches the port spends the key. The default HTTP_ADDR binds every
interface, so this is what an operator who forgot AUTH sees first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service_process import served

WARNING = b"anyone who can reach"
# A provider that is never called: the test only starts the service.
REAL_PROVIDER = {"USE_LLM_MOCK": "false", "LLM_KEY": "test-key", "DATABASE_URL": "none"}


async def test_no_auth_a_real_provider_and_every_interface_warns_at_start(
    tmp_path: Path,
) -> None:
    async with served(tmp_path, HTTP_ADDR="0.0.0.0:0", **REAL_PROVIDER) as service:
        pass
    lines = [line for line in bytes(service.log).splitlines() if WARNING in line]
    assert len(lines) == 1, bytes(service.log)
    assert b"WARNING" in lines[0]
    assert b"AUTH" in lines[0]
    assert b"test-key" not in bytes(service.log)


@pytest.mark.parametrize(
    "env",
    [
        {"HTTP_ADDR": "127.0.0.1:0", **REAL_PROVIDER},  # this machine only
        {"HTTP_ADDR": "0.0.0.0:0", "USE_LLM_MOCK": "true", "DATABASE_URL": "none"},  # no key
    ],
    ids=["loopback", "mock"],
)
async def test_a_server_that_spends_nobodys_key_is_quiet(
    tmp_path: Path, env: dict[str, str]
) -> None:
    async with served(tmp_path, **env) as service:
        pass
    assert WARNING not in bytes(service.log)
