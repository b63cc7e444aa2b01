"""The official openai npm package, under Node.js, uses an ensemble as a model.

Its package is installed from the npm registry by this test when missing (tests/node).
Without `node` the test is skipped with the reason, unless REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import trio

from tests.integration.harness import running_service

NODE_PROJECT = Path(__file__).resolve().parents[1] / "node"


async def node_ready() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "Node.js is not installed: the openai npm package cannot be tried"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    if not (NODE_PROJECT / "node_modules" / "openai").is_dir():
        await trio.run_process(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_PROJECT, capture_stdout=True
        )
    return node


async def test_the_openai_npm_package_lists_completes_streams_and_raises(tmp_path: Path) -> None:
    node = await node_ready()
    env = {"MOCK_FIRST_TOKEN_MS": "5", "MOCK_TOKEN_MS": "1"}
    async with running_service(tmp_path, None, env=env) as service:
        result = await trio.run_process(
            [node, "chat.mjs", service.url],
            cwd=NODE_PROJECT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    seen = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert seen["models"] == ["default"]
    assert seen["whole"].startswith("Combining 2 answers.")
    assert seen["usage"]["total_tokens"] > 0
    assert seen["streamed"].startswith("Combining 2 answers.")
    assert seen["streamUsage"]["total_tokens"] > 0
    assert seen["notFound"] == {"name": "NotFoundError", "status": 404, "code": "model_not_found"}
