"""Only the header the proxy writes names the client: with TRUSTED_PROXIES set, the address
comes from FORWARDED_HEADER alone, and the other header, which a proxy passes through from
the client untouched, changes nothing: not the rate limits, not the refused sign-ins limit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.settings import SettingsError, load_settings
from tests.integration.harness import running_service
from tests.limits.test_limits_over_http import body, limited

BEHIND_PROXY = {"TRUSTED_PROXIES": "127.0.0.0/8"}  # the test client is "the proxy"
NGINX_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


async def test_a_client_varying_forwarded_cannot_escape_a_burst(tmp_path: Path) -> None:
    limits = "[anonymous]\nrequests_per_minute = 1\nburst = 3\n"
    statuses = []
    async with limited(tmp_path, limits, **BEHIND_PROXY) as s:
        for number in range(8):
            response = await s.client.post(
                "/api/process",
                json=body(number),
                headers={"Forwarded": f"for=198.51.100.{number}"},
            )
            statuses.append(response.status_code)
    assert statuses == [200] * 3 + [429] * 5


async def test_a_client_varying_forwarded_cannot_escape_the_sign_in_limit(
    tmp_path: Path,
) -> None:
    env = {
        "AUTH": "keys",
        "AUTH_FAILURE_BURST": "5",
        "AUTH_FAILURE_EVERY_S": "60",
        **BEHIND_PROXY,
    }
    statuses = []
    async with running_service(tmp_path, None, env=env) as service:
        for number in range(8):
            response = await service.client.get(
                "/api/conversations",
                headers={
                    "Authorization": "Bearer fo_not-a-key",
                    "Forwarded": f'for="[2001:db8::{number}]"',
                },
            )
            statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429] * 3


async def test_with_forwarded_configured_x_forwarded_for_is_the_ignored_one(
    tmp_path: Path,
) -> None:
    limits = "[anonymous]\nrequests_per_minute = 1\nburst = 1\n"
    async with limited(tmp_path, limits, FORWARDED_HEADER="Forwarded", **BEHIND_PROXY) as s:

        async def status(forwarded: str, forwarded_for: str) -> int:
            headers = {"Forwarded": forwarded, "X-Forwarded-For": forwarded_for}
            response = await s.client.post("/api/process", json=body(0), headers=headers)
            return response.status_code

        first = await status("for=203.0.113.1", "198.51.100.1")
        other_xff = await status("for=203.0.113.1", "198.51.100.2")
        other_client = await status("for=203.0.113.2", "198.51.100.2")
    assert (first, other_xff, other_client) == (200, 429, 200)


def test_forwarded_header_takes_either_header_in_any_case_and_nothing_else() -> None:
    def header(value: str) -> str:
        return load_settings({"FORWARDED_HEADER": value}, dotenv_path=None).forwarded_header

    assert load_settings({}, dotenv_path=None).forwarded_header == "X-Forwarded-For"
    assert header("forwarded") == "Forwarded"
    assert header("x-forwarded-for") == "X-Forwarded-For"
    with pytest.raises(SettingsError, match=r"^FORWARDED_HEADER='X-Real-IP': expected"):
        header("X-Real-IP")


def test_the_shipped_nginx_config_writes_x_forwarded_for_and_clears_forwarded() -> None:
    directives = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())  # comments mention blocks too
    server = directives.split("server {", 1)[1]
    location = r"location [^{]*\{([^}]*)\}"
    proxied = [block for block in re.findall(location, server) if "proxy_pass" in block]
    # What the server block sets, every location inherits...
    inherited = re.sub(location, "", server)
    assert proxied
    for block in proxied:
        # ...unless it sets a header of its own: then nginx passes it none of the server's.
        headers = block if "proxy_set_header" in block else inherited
        # The address nginx saw, alone: never appended to what the client sent
        # (tests/cluster/test_limits_behind_nginx.py shows why, through the real nginx).
        assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;", headers)
        assert re.search(r'proxy_set_header\s+Forwarded\s+"";', headers)
