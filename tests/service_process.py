"""`python -m service` in a test, its whole log kept.

async with served(tmp_path, WORKERS="2") as service:
    service.url, service.process, service.log
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from tests.integration.test_main_process import RUNNING_ON, service_env
from tests.log_watch import watch


@dataclass
class ServiceProcess:
    process: trio.Process
    url: str
    log: bytearray


@asynccontextmanager
async def served(cwd: Path, **env: str) -> AsyncIterator[ServiceProcess]:
    """`python -m service`, its whole log kept (read all along, so it never blocks)."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "service"], cwd=cwd, env=service_env(**env), stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    stderr = process.stderr
    log = bytearray()
    listening = trio.Event()
    url = ""

    async def keep_log() -> None:
        nonlocal url
        while chunk := await stderr.receive_some():
            log.extend(chunk)
            if not listening.is_set() and (match := RUNNING_ON.search(log)):
                url = match.group(1).decode()
                listening.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_log)
            with trio.fail_after(15):
                await listening.wait()
            yield ServiceProcess(process, url, log)
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
        watch.scan(log.decode(errors="replace"), where=f"python -m service in {cwd.name}")
