"""What nginx did with each request, read from its access log (scripts/cluster writes one
JSON line per request: its status, and every replica tried for it).

    lines = cluster.requests()
    replicas_tried(lines[-1])                 # ["127.0.0.1:40001"], or two after a retry
    await logged(cluster, count=5)            # wait until 5 requests have ended
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import trio

from scripts.cluster import Cluster
from scripts.cluster.processes import Nginx


def replicas_tried(line: dict[str, Any]) -> list[str]:
    """The replicas nginx passed the request to, in order (`-` when none was tried)."""
    return [part.strip() for part in str(line["upstream"]).split(",")]


def served_by(line: dict[str, Any]) -> str:
    """The replica whose answer nginx sent (the last one tried)."""
    return replicas_tried(line)[-1]


async def logged(
    cluster: Cluster | Nginx, *, count: int, within_s: float = 10
) -> list[dict[str, Any]]:
    """nginx's access log once it has at least `count` lines (nginx writes a request's line
    when it ends: after the answer, or after the client hung up)."""
    with trio.fail_after(within_s):
        while len(lines := cluster.requests()) < count:  # noqa: ASYNC110 (a file, no event)
            await trio.sleep(0.02)
    return lines


def nginx_statuses(lines: list[dict[str, Any]]) -> Counter[int]:
    return Counter(int(line["status"]) for line in lines)
