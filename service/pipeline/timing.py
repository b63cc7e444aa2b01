"""Durations as the events report them: milliseconds on trio's clock, to a tenth.

started = trio.current_time()
...
elapsed_ms = ms_since(started)
"""

from __future__ import annotations

import trio


def ms_since(start: float) -> float:
    return round((trio.current_time() - start) * 1000, 1)
