"""`python -m service` as a user runs it: SIGTERM during the README's curl, start-up errors,
reloading the ensemble file (SIGHUP, edits), and WORKERS processes sharing one port. The
README's examples themselves run in test_readme_examples.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.integration.harness import SseEvent, read_events

ROOT = Path(__file__).resolve().parents[2]
RUNNING_ON = re.compile(rb"Running on (http://[\d.]+:\d+)")


def service_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LLM_KEY", "USE_LLM_MOCK")}
    env |= {
        "HTTP_ADDR": "127.0.0.1:0",
        "MOCK_FIRST_TOKEN_MS": "20",
        "MOCK_TOKEN_MS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    return env | overrides


@asynccontextmanager
async def python_m_service(
    cwd: Path, *, ready_line: bytes = b"", **env: str
) -> AsyncIterator[tuple[trio.Process, str]]:
    """Start `python -m service` on a free port; yield the process and its URL once it has
    logged where it listens (and `ready_line`, when given)."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "service"],
        cwd=cwd,
        env=service_env(**env),
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    log = b""
    try:
        with trio.fail_after(15):
            while not ((match := RUNNING_ON.search(log)) and ready_line in log):
                chunk = await process.stderr.receive_some()
                assert chunk, f"the service exited before listening:\n{log.decode()}"
                log += chunk
        yield process, match.group(1).decode()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


def readme_curl(url: str) -> str:
    """The first curl command of the README, pointed at `url` instead of localhost:8080."""
    readme = (ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("curl -N -X POST"))
    assert "http://localhost:8080/api/process" in line
    return line.replace("http://localhost:8080", url)


def parse_sse(text: str) -> list[SseEvent]:
    import json

    events = []
    for block in text.strip().split("\n\n"):
        lines = [ln for ln in block.split("\n") if not ln.startswith(":")]
        if not lines:
            continue
        fields = dict(ln.split(": ", 1) for ln in lines if not ln.startswith("data: "))
        data = "\n".join(ln.removeprefix("data: ") for ln in lines if ln.startswith("data: "))
        events.append(SseEvent(id=fields["id"], event=fields["event"], data=json.loads(data)))
    return events


async def test_sigterm_ends_open_streams_with_shutting_down_and_exits_zero(
    tmp_path: Path,
) -> None:
    # Agents that take a minute: the stream is certainly open when SIGTERM arrives.
    env = {"MOCK_FIRST_TOKEN_MS": "60000", "SHUTDOWN_GRACE_S": "0.5"}
    async with python_m_service(tmp_path, **env) as (process, url):
        curl = await trio.lowlevel.open_process(
            ["bash", "-c", readme_curl(url)], stdout=subprocess.PIPE
        )
        assert curl.stdout is not None
        output = b""
        with trio.fail_after(10):
            while b"agent.started" not in output:
                output += await curl.stdout.receive_some()
            process.send_signal(signal.SIGTERM)
            while chunk := await curl.stdout.receive_some():
                output += chunk
            await curl.wait()
            exit_code = await process.wait()

    events = parse_sse(output.decode())
    assert exit_code == 0
    assert events[-1].event == "error"
    assert events[-1].data["error"]["code"] == "shutting_down"
    assert events[-1].data["final"] is True


async def start_and_fail(tmp_path: Path, **env: str) -> tuple[int, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "service"],
        cwd=tmp_path,
        env=service_env(**env),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stderr.decode()


async def test_a_bad_setting_stops_the_start_with_one_line_naming_it(tmp_path: Path) -> None:
    code, stderr = await start_and_fail(tmp_path, REQUEST_TIMEOUT_S="-3")
    assert code == 2
    assert stderr.strip().count("\n") == 0
    assert stderr.startswith("error: REQUEST_TIMEOUT_S='-3': ")


async def test_real_provider_without_a_key_fails_at_start(tmp_path: Path) -> None:
    code, stderr = await start_and_fail(tmp_path, USE_LLM_MOCK="false")
    assert code == 2
    assert "LLM_KEY is required" in stderr


async def test_an_invalid_ensemble_file_stops_the_start_naming_file_and_field(
    tmp_path: Path,
) -> None:
    ensemble = tmp_path / "bad.toml"
    ensemble.write_text('[[agents]]\nname = "a"\n\n[summarizer]\nname = "s"\nsystem_prompt = "x"\n')
    code, stderr = await start_and_fail(tmp_path, ENSEMBLE_FILE=str(ensemble))
    assert code == 2
    assert str(ensemble) in stderr
    assert "agents[0].system_prompt: Field required" in stderr


async def test_settings_come_from_dotenv_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AGENT_TIMEOUT_S=zero\n")
    code, stderr = await start_and_fail(tmp_path)
    assert code == 2
    assert "AGENT_TIMEOUT_S='zero'" in stderr


async def test_an_address_already_in_use_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = await start_and_fail(tmp_path, HTTP_ADDR=f"127.0.0.1:{port}")
    assert code == 2
    assert stderr.strip().count("\n") == 0
    assert stderr.startswith(f"error: HTTP_ADDR='127.0.0.1:{port}': cannot listen there")


ONE_AGENT = """\
[[agents]]
name = "a"
system_prompt = "You are a."

[summarizer]
name = "s"
system_prompt = "Combine."
"""

TWO_AGENTS = """\
[[agents]]
name = "a"
system_prompt = "You are a."

[[agents]]
name = "b"
system_prompt = "You are b."

[summarizer]
name = "s"
system_prompt = "Combine."
"""

# Line 4 sets the agent's timeout to a value the loader refuses.
BROKEN_TIMEOUT = """\
[[agents]]
name = "a"
system_prompt = "You are a."
timeout_s = -1

[summarizer]
name = "s"
system_prompt = "Combine."
"""

FAST_MOCK = {"MOCK_FIRST_TOKEN_MS": "0", "MOCK_TOKEN_MS": "0"}


def replace_file(path: Path, text: str) -> None:
    """Write `path` the way an editor saving atomically does: the poller never sees half."""
    draft = path.with_name(path.name + ".draft")
    draft.write_text(text)
    os.replace(draft, path)


async def admin_ensemble(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/admin/ensemble")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


def agent_names(state: dict[str, Any]) -> list[str]:
    return [agent["name"] for agent in state["ensembles"]["default"]["agents"]]


async def wait_for_ensemble(
    client: httpx.AsyncClient, what: str, check: Any, *, timeout_s: float = 5
) -> dict[str, Any]:
    """Poll GET /admin/ensemble until `check(state)`; fail with the last state after a while."""
    state: dict[str, Any] = {}
    with trio.move_on_after(timeout_s):
        while True:
            state = await admin_ensemble(client)
            if check(state):
                return state
            await trio.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}; /admin/ensemble said {state}")


async def process_events(client: httpx.AsyncClient, message_id: str) -> list[SseEvent]:
    body = {"message": "Explain gravity like I am 5", "message_id": message_id}
    with trio.fail_after(10):
        async with client.stream("POST", "/api/process", json=body) as response:
            assert response.status_code == 200
            return await read_events(response)


async def read_stderr_until(process: trio.Process, needle: str, *, timeout_s: float = 5) -> str:
    """What the service wrote to stderr since it started listening, up to `needle` (if seen)."""
    assert process.stderr is not None
    log = b""
    with trio.move_on_after(timeout_s):
        while needle.encode() not in log:
            chunk = await process.stderr.receive_some()
            if not chunk:
                break
            log += chunk
    return log.decode(errors="replace")


async def test_sighup_reloads_the_ensemble_file(tmp_path: Path) -> None:
    ensemble = tmp_path / "ensemble.toml"
    ensemble.write_text(ONE_AGENT)
    env = {"ENSEMBLE_FILE": str(ensemble), "ENSEMBLE_RELOAD_S": "0", **FAST_MOCK}
    async with python_m_service(tmp_path, **env) as (process, url):
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            before = await admin_ensemble(client)
            assert agent_names(before) == ["a"]
            assert before["problem"] is None

            ensemble.write_text(TWO_AGENTS)
            # Polling is off: the edit alone changes nothing.
            with trio.move_on_after(0.5):
                while True:
                    assert (await admin_ensemble(client))["version"] == before["version"]
                    await trio.sleep(0.05)

            process.send_signal(signal.SIGHUP)
            after = await wait_for_ensemble(
                client,
                "a new version with agent b after SIGHUP",
                lambda state: (
                    state["version"] != before["version"] and agent_names(state) == ["a", "b"]
                ),
            )
            assert after["problem"] is None

            events = await process_events(client, "after-sighup")
            assert process.returncode is None  # SIGHUP reloads; it does not end the service

    assert events[-1].event == "done"
    assert events[-1].data["ensemble_version"] == after["version"]
    started = next(e for e in events if e.event == "summary.started")
    assert started.data["ensemble_version"] == after["version"]
    completed = {e.data["source"] for e in events if e.event == "agent.completed"}
    assert completed == {"a", "b"}


async def test_a_broken_edit_keeps_the_running_version_and_says_why(tmp_path: Path) -> None:
    ensemble = tmp_path / "ensemble.toml"
    ensemble.write_text(ONE_AGENT)
    env = {"ENSEMBLE_FILE": str(ensemble), "ENSEMBLE_RELOAD_S": "0.2", **FAST_MOCK}
    async with python_m_service(tmp_path, **env) as (process, url):
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            before = await admin_ensemble(client)
            assert before["problem"] is None

            replace_file(ensemble, BROKEN_TIMEOUT)
            refused = await wait_for_ensemble(
                client, "a problem after the broken edit", lambda state: state["problem"]
            )
            problem = refused["problem"]["message"]
            assert problem.startswith(f"{ensemble}:4: agents[0].timeout_s: "), problem
            assert refused["version"] == before["version"]
            assert agent_names(refused) == ["a"]

            events = await process_events(client, "while-broken")
            assert events[-1].event == "done"
            assert events[-1].data["ensemble_version"] == before["version"]

            stderr = await read_stderr_until(process, "refused")
            refusals = [ln for ln in stderr.splitlines() if "refused" in ln]
            assert refusals, f"no refusal logged; stderr was:\n{stderr}"
            assert " ERROR " in refusals[0]
            assert (
                f"ensemble reload (file changed) refused; still using version "
                f"{before['version']}: {problem}"
            ) in refusals[0]

            replace_file(ensemble, TWO_AGENTS)
            fixed = await wait_for_ensemble(
                client,
                "the problem cleared and a new version after the fix",
                lambda state: state["problem"] is None and state["version"] != before["version"],
            )
            assert agent_names(fixed) == ["a", "b"]


async def test_metrics_in_multiprocess_mode_are_kept_in_the_shared_directory(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_99999.db").write_bytes(b"stale file of an earlier run")
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "MOCK_FIRST_TOKEN_MS": "0",
        "MOCK_TOKEN_MS": "0",
    }
    async with python_m_service(tmp_path, **env) as (process, url):
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            body = {"message": "Hi", "message_id": "m-metrics"}
            async with client.stream("POST", "/api/process", json=body) as response:
                assert (await read_events(response))[-1].event == "done"
            text = (await client.get("/metrics")).text
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await process.wait()

    assert 'fanout_http_requests_total{route="/api/process",status="200"} 1.0' in text
    assert "fanout_streams_in_flight 0.0" in text
    files = {path.name for path in shared.glob("*.db")}
    assert "counter_99999.db" not in files
    assert any(name.startswith("counter_") for name in files)


# With WORKERS=n the parent logs this once every worker serves.
TWO_WORKERS_READY = b"with 2 workers"


def child_pids(parent_pid: int) -> set[int]:
    """The running child processes of `parent_pid`, read from /proc (Linux)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rpartition(")")[2].split()[:2]
        except OSError:
            continue  # it exited while we looked
        if int(ppid) == parent_pid and state != "Z":
            children.add(int(stat.parent.name))
    return children


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def pids_that_served(metrics_dir: Path) -> set[int]:
    """The processes that counted at least one HTTP request in their multiprocess files."""
    from prometheus_client.mmap_dict import MmapedDict

    served = set()
    for path in metrics_dir.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        if any('"fanout_http_requests_total"' in key and count > 0 for key, count, *_ in values):
            served.add(int(path.stem.removeprefix("counter_")))
    return served


async def get_on_a_new_connection(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_two_workers_share_the_port_and_both_serve(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {"WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(shared), **FAST_MOCK}
    async with python_m_service(tmp_path, ready_line=TWO_WORKERS_READY, **env) as (process, url):
        workers = child_pids(process.pid)
        assert len(workers) == 2
        # The kernel gives each new connection to whichever worker accepts first: a few
        # rounds of connections reach both.
        sent = 0
        with trio.fail_after(10):
            while pids_that_served(shared) != workers:
                async with trio.open_nursery() as nursery:
                    for _ in range(4):
                        nursery.start_soon(get_on_a_new_connection, url)
                sent += 4
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            events = await process_events(client, "m-workers")
            metrics = (await client.get("/metrics")).text

    assert events[-1].event == "done"
    # /metrics on either worker adds up what every worker counted.
    assert f'fanout_http_requests_total{{route="/healthz",status="200"}} {sent}.0' in metrics
    assert 'fanout_http_requests_total{route="/api/process",status="200"} 1.0' in metrics


async def test_sigterm_to_the_parent_drains_every_worker_and_exits_zero(tmp_path: Path) -> None:
    # Agents that take a minute: the stream is certainly open when SIGTERM arrives.
    env = {"WORKERS": "2", "MOCK_FIRST_TOKEN_MS": "60000", "SHUTDOWN_GRACE_S": "0.5"}
    async with python_m_service(tmp_path, ready_line=TWO_WORKERS_READY, **env) as (process, url):
        workers = child_pids(process.pid)
        assert len(workers) == 2
        curl = await trio.lowlevel.open_process(
            ["bash", "-c", readme_curl(url)], stdout=subprocess.PIPE
        )
        assert curl.stdout is not None
        output = b""
        with trio.fail_after(10):
            while b"agent.started" not in output:
                output += await curl.stdout.receive_some()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            while chunk := await curl.stdout.receive_some():
                output += chunk
            await curl.wait()
            exit_code = await process.wait()

    assert exit_code == 0
    events = parse_sse(output.decode())
    assert events[-1].event == "error"
    assert events[-1].data["error"]["code"] == "shutting_down"
    assert not [pid for pid in workers if is_running(pid)]


@pytest.mark.parametrize("workers", ["0", "abc"])
async def test_a_bad_workers_value_stops_the_start_with_one_line(
    tmp_path: Path, workers: str
) -> None:
    code, stderr = await start_and_fail(tmp_path, WORKERS=workers)
    assert code == 2
    assert stderr.strip().count("\n") == 0
    assert stderr.startswith(f"error: WORKERS='{workers}': ")


async def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    env = {"WORKERS": "2", **FAST_MOCK}
    async with python_m_service(tmp_path, ready_line=TWO_WORKERS_READY, **env) as (process, url):
        victim = min(child_pids(process.pid))
        os.kill(victim, signal.SIGKILL)
        replaced = f"(pid {victim}) exited unexpectedly with code -9; starting a new one"
        stderr = await read_stderr_until(process, replaced, timeout_s=5)
        assert replaced in stderr
        if "Running on" not in stderr.partition(replaced)[2]:
            stderr += await read_stderr_until(process, "Running on", timeout_s=10)
        assert "Running on" in stderr.partition(replaced)[2]  # the new worker serves
        workers = child_pids(process.pid)
        assert len(workers) == 2
        assert victim not in workers

        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            events = await process_events(client, "after-a-crash")
        assert events[-1].event == "done"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await process.wait() == 0


async def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    async with python_m_service(tmp_path, ready_line=TWO_WORKERS_READY, WORKERS="2") as (
        process,
        _url,
    ):
        workers = child_pids(process.pid)
        assert len(workers) == 2
        process.kill()
        with trio.fail_after(5):
            await process.wait()
        for _ in range(100):  # 5 s
            if not (running := [pid for pid in workers if is_running(pid)]):
                break
            await trio.sleep(0.05)
    assert not running, "workers outlived their parent"
