"""URLs of LLM servers: validate them, tell local from public, hide credentials in logs.

check_base_url("http://localhost:11434/v1/")   # 'http://localhost:11434/v1'
is_local_url("http://ollama:11434/v1")          # True: no API key needed
redact_url("https://user:pw@host/v1")           # 'https://***@host/v1'
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def check_base_url(value: str) -> str:
    """`value` without a trailing slash; ValueError unless it is an http(s) URL with a host."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    try:
        parts.port  # noqa: B018  # raises for a port out of range
    except ValueError as exc:
        raise ValueError("the port must be from 0 to 65535") from exc
    return value.rstrip("/")


def redact_url(value: str) -> str:
    """`value` with any credentials a URL may carry (user:password@, ?query) hidden."""
    parts = urlsplit(value)
    _, at, host_port = parts.netloc.rpartition("@")
    if not at and not parts.query:
        return value
    netloc = f"***@{host_port}" if at else host_port
    return parts._replace(netloc=netloc, query="***" if parts.query else "").geturl()


def is_local_url(url: str) -> bool:
    """True when `url` points at this machine or a private network (Ollama, vLLM, a sidecar).

    Such servers usually need no API key; a public host (OpenAI's) always does.
    """
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # A single-label name (`ollama`, `vllm`) is a container or LAN host, never a public API.
        return "." not in host
    return address.is_loopback or address.is_private or address.is_link_local
