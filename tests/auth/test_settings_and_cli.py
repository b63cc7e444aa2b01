"""Authentication settings that cannot work together stop the start in one line; the
`keys` command creates, lists and revokes keys against DATABASE_URL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from service.settings import SettingsError, load_settings
from tests.integration.test_main_process import service_env


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"PRODUCTION": "true"}, "ALLOW_ANONYMOUS=true"),
        ({"AUTH": "keys", "DATABASE_URL": "none"}, "API keys are kept in the database"),
        ({"AUTH": "jwt"}, "exactly one of JWT_JWKS_URL"),
        ({"AUTH": "jwt", "JWT_SECRET": "s", "JWT_JWKS_URL": "http://x/jwks"}, "exactly one"),
        ({"AUTH": "passwords"}, 'expected "none", "keys", "jwt"'),
        ({"AUTH": "none,keys"}, 'expected "none"'),
    ],
)
def test_auth_settings_that_cannot_work_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        load_settings(env, dotenv_path=None)


def test_production_without_auth_starts_only_when_anonymous_is_chosen() -> None:
    settings = load_settings({"PRODUCTION": "true", "ALLOW_ANONYMOUS": "true"}, dotenv_path=None)
    assert settings.auth_modes == frozenset()
    both = load_settings({"AUTH": "jwt,keys", "JWT_SECRET": "x" * 32}, dotenv_path=None)
    assert both.auth_modes == {"keys", "jwt"}


async def keys_command(tmp_path: Path, *args: str) -> trio.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "service", "keys", *args],
        cwd=tmp_path,
        env=service_env(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def test_the_keys_command_creates_lists_and_revokes(tmp_path: Path) -> None:
    created = await keys_command(
        tmp_path,
        "create",
        "--user",
        "alice",
        "--tenant",
        "acme",
        "--scope",
        "process",
        "--expires",
        "30d",
        "--name",
        "laptop",
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.decode().strip().splitlines()[-1]
    assert key.startswith("fo_")
    assert len(key) >= 3 + 43  # 256 bits, base64url

    as_json = await keys_command(tmp_path, "create", "--user", "bob", "--json")
    made = json.loads(as_json.stdout)
    assert made["key"].startswith("fo_")
    assert made["id"].startswith("key_")
    assert made["scopes"] == ["admin", "history", "process"]

    listing = await keys_command(tmp_path, "list", "--json")
    keys = json.loads(listing.stdout)["keys"]
    assert [k["user"] for k in keys] == ["alice", "bob"]
    assert keys[0]["scopes"] == ["process"]
    assert keys[0]["expires_at"] is not None
    assert key not in listing.stdout.decode()
    assert made["key"] not in listing.stdout.decode()

    revoked = await keys_command(tmp_path, "revoke", made["id"])
    again = json.loads((await keys_command(tmp_path, "list", "--json")).stdout)["keys"]
    missing = await keys_command(tmp_path, "revoke", "key_nope")
    bad = await keys_command(tmp_path, "create", "--user", "x", "--expires", "forever")
    assert revoked.returncode == 0
    assert again[1]["revoked_at"] is not None
    assert missing.returncode == 2
    assert b"no key key_nope" in missing.stderr
    assert bad.returncode == 2
    assert bad.stderr.decode().count("\n") == 1
