"""schemathesis against the live server, with AUTH off and on: examples from the schema,
its edge cases, fuzzed requests (positive and negative) and stateful runs along the
document's links. Every check must hold: no 5xx, every status documented, every answer
(SSE events included) matching its schema, invalid input refused and valid input taken,
credentials enforced, 405 for methods a route does not take. And the server logged no
unhandled error and no key.

Bounded: 10 examples per operation in `make test` (about 1,200 requests a run), 50 in
`make test-faults`, with a fixed FUZZ_SEED so a run can be repeated; FUZZ_EXAMPLES sets
both, and with another seed makes a longer hunt.
A failure found here becomes a plain test in test_fuzz_findings.py.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import trio

from tests.faults.sizes import sized
from tests.integration.test_main_process import service_env
from tests.service_process import served

SCHEMATHESIS = str(Path(sys.executable).with_name("st"))
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = os.environ.get("FUZZ_EXAMPLES")
SEED = os.environ.get("FUZZ_SEED", "20261130")
QUICK = {"MOCK_FIRST_TOKEN_MS": "0", "MOCK_TOKEN_MS": "0", "AUTH_FAILURE_BURST": "100000"}
ADMIN = ("--user", "root", "--tenant", "acme", "--role", "admin", "--json")
KEY = re.compile(rb"fo_[A-Za-z0-9_-]{20,}")


async def admin_key(tmp_path: Path, env: dict[str, str]) -> str:
    created = await trio.run_process(
        [sys.executable, "-m", "service", "keys", "create", *ADMIN],
        cwd=tmp_path,
        env=service_env(**env),
        capture_stdout=True,
        capture_stderr=True,
    )
    key: str = json.loads(created.stdout)["key"]
    return key


@pytest.mark.parametrize("examples", sized(small="10", full="50"))
@pytest.mark.parametrize("auth", ["none", "keys"])
async def test_the_fuzzer_finds_nothing(tmp_path: Path, auth: str, examples: str) -> None:
    env = {**QUICK, "AUTH": auth}
    headers = (
        ["-H", f"Authorization: Bearer {await admin_key(tmp_path, env)}"] if auth == "keys" else []
    )
    har = tmp_path / "exchanges.har"
    async with served(tmp_path, **env) as service:
        with trio.fail_after(300):
            target = ("run", f"{service.url}/openapi.json", "--no-color")
            per_operation = EXAMPLES or examples
            options = ("--max-examples", per_operation, "--seed", SEED, "--workers", "1")
            report_to = ("--report", "har", "--report-har-path", str(har))
            run = await trio.run_process(
                [
                    SCHEMATHESIS,
                    "--config-file",
                    str(CONFIG),
                    *target,
                    *options,
                    *report_to,
                    *headers,
                ],
                cwd=tmp_path,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        log = bytes(service.log)
    report = run.stdout.decode(errors="replace")
    assert run.returncode == 0, report[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", report)
    assert generated is not None, report[-2000:]
    assert int(generated.group(1)) >= 500  # the run really fuzzed
    assert b"unhandled error" not in log
    assert b" 500 " not in log
    # Keys the fuzzer made (POST /admin/keys) and the one it used: none reached a log line.
    made = set(KEY.findall(har.read_bytes())) | {h.split()[-1].encode() for h in headers[1:]}
    if auth == "keys":
        assert made
    assert [key for key in made if key in log] == []
