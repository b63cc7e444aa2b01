"""Redis, loaded only where an instance uses it. coredis, with the beartype it loads, cost a
tenth of a second of CPU at every start, and most instances run without Redis.

    client = connect(url)                  # coredis, decoding replies as text
    try: ...
    except redis_failures() as exc: ...    # a timeout, Redis's own error, or the socket's
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    import coredis


def connect(url: str) -> coredis.Redis[str]:
    import coredis  # here, not at the top: see the module's docstring

    return coredis.Redis.from_url(url, decode_responses=True)


def redis_failures() -> tuple[type[BaseException], ...]:
    """What a call to Redis raises when Redis is slow, refuses or is gone."""
    import coredis.exceptions

    return (trio.TooSlowError, coredis.exceptions.RedisError, OSError)
