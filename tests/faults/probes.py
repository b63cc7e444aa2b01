"""What a running service process holds and says, read from outside it: its resident memory
and open file descriptors (Linux's /proc), its Prometheus metrics, and its log.

    held = Held.of(service.process.pid)          # rss_mib, fds
    value = await metric(client, "fanout_storage_errors_total", operation="write")
    logged = log_matches(service.log, r"storing message (\\d+) failed")
    held_open = connections_to(upstream_port)     # {"established": 2}
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from dataclasses import dataclass

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Held:
    rss_mib: float
    fds: int  # without the connections to `pool_port`, when it is given
    pooled: int = 0  # the connections to `pool_port`: a pool's, bounded by its size

    @classmethod
    def of(cls, pid: int, *, pool_port: int | None = None) -> Held:
        with open(f"/proc/{pid}/status") as status:
            rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        links = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(FileNotFoundError):  # closed since the listing
                links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        pooled = 0
        if pool_port is not None:
            inodes = _socket_inodes_to(pool_port)
            pooled = sum(link.removeprefix("socket:[").rstrip("]") in inodes for link in links)
        return cls(rss_mib=rss_kib / 1024, fds=len(links) - pooled, pooled=pooled)


def _socket_inodes_to(port: int) -> set[str]:
    """The inodes of this machine's TCP sockets whose remote end is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """The sum of the samples of `name` (with those labels) that GET /metrics shows."""
    response = await client.get("/metrics")
    response.raise_for_status()
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def wait_for_metric(
    client: httpx.AsyncClient, name: str, value: float, *, within_s: float, **labels: str
) -> float:
    """Poll until the metric is at most `value`; what it was last (the caller asserts)."""
    seen = await metric(client, name, **labels)
    with trio.move_on_after(within_s):
        while seen > value:
            await trio.sleep(0.1)
            seen = await metric(client, name, **labels)
    return seen


def log_matches(log: bytes | bytearray, pattern: str) -> list[str]:
    """The first group of every line of the service's log that `pattern` finds."""
    compiled = re.compile(pattern)
    found = []
    for line in bytes(log).decode(errors="replace").splitlines():
        if match := compiled.search(line):
            found.append(match.group(1))
    return found


# /proc/net/tcp's connection states (include/net/tcp_states.h); gone but for the kernel: TIME_WAIT.
TCP_STATES = {
    "01": "established",
    "02": "syn-sent",
    "03": "syn-received",
    "04": "fin-wait-1",
    "05": "fin-wait-2",
    "06": "time-wait",
    "07": "close",
    "08": "close-wait",
    "09": "last-ack",
    "0A": "listen",
    "0B": "closing",
}


def connections_to(port: int) -> Counter[str]:
    """This machine's IPv4 TCP sockets whose remote end is 127.0.0.1:`port`, by state: the
    connections a client (the service) holds to a server on that port. TIME_WAIT is left
    out: no process holds it."""
    states: Counter[str] = Counter()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            state = TCP_STATES.get(fields[3], fields[3])
            if remote_port == port and state != "time-wait":
                states[state] += 1
    return states


def tcp_state(local_port: int, remote_port: int) -> str | None:
    """The state of the IPv4 TCP socket from `local_port` to `remote_port` on 127.0.0.1,
    as the kernel holds it (None: no such socket), e.g. "fin-wait-1" for a server side
    closed while its unsent data waits for a client that never reads."""
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local = int(fields[1].rsplit(":", 1)[1], 16)
            remote = int(fields[2].rsplit(":", 1)[1], 16)
            if (local, remote) == (local_port, remote_port):
                return TCP_STATES.get(fields[3], fields[3])
    return None
