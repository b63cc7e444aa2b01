"""A run that goes on without its client (`on_disconnect: "continue"`) ends wholly once it
has its terminal event, with Redis on too (limits and the relay): its stream slot comes
back, and a SIGTERM afterwards finds nothing running and exits at once, not after the
grace period and the hard stop. Found through nginx (tests/cluster), where a replica that
had run such a message took 15 s to stop."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import trio

from tests.databases import REDIS_URL, forget_redis_prefix, redis_reachable
from tests.integration.harness import iter_events
from tests.service_process import served

GRACE_S = 10


async def test_a_continued_run_gives_back_its_slot_and_holds_no_shutdown(tmp_path: Path) -> None:
    await redis_reachable()
    limits = tmp_path / "limits.toml"
    limits.write_text(
        "[anonymous]\nrequests_per_minute = 600\nburst = 50\nconcurrent_streams = 1\n"
    )
    env = {
        "REDIS_URL": REDIS_URL,
        "LIMITS_FILE": str(limits),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data.db'}",
        "SHUTDOWN_GRACE_S": str(GRACE_S),
    }
    try:
        async with served(tmp_path, **env) as service:
            async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
                payload = {"message": "Hi?", "message_id": "m-1", "on_disconnect": "continue"}
                async with client.stream("POST", "/api/process", json=payload) as response:
                    assert response.status_code == 200
                    async for _ in iter_events(response):
                        break  # the client leaves; the run goes on
                with trio.fail_after(10):
                    while (await client.get("/api/messages/m-1")).json()["status"] == "running":  # noqa: ASYNC110
                        await trio.sleep(0.05)
                second = {"message": "Hi again?", "message_id": "m-2"}
                async with client.stream("POST", "/api/process", json=second) as after:
                    after_status = after.status_code
                    await after.aread()
            service.process.send_signal(signal.SIGTERM)
            signalled_at = trio.current_time()
            with trio.move_on_after(GRACE_S + 10):
                await service.process.wait()
            exited_after = trio.current_time() - signalled_at
    finally:
        await forget_redis_prefix("fanout:")
    assert after_status == 200, "the finished run still holds the caller's only stream slot"
    assert service.process.returncode == 0
    assert exited_after < GRACE_S / 2, f"exited {exited_after:.1f} s after SIGTERM"
