"""Garbage collection sized for a server whose live objects are mostly its open streams.

CPython collects its youngest generation every 700 allocations, which promotes objects of
requests still in flight to the old generation, and collects the old generation in full,
scanning every live object while the event loop stands still, whenever it grew by a
quarter. With 500 open streams those full collections took 0.1-0.4 s each, and they came
back every time more streams opened: every client of the process waited that long.

Reference counting frees almost everything this service allocates (a saturation run of
1000 pipelines left no cyclic garbage at all), so the collector can run far less often.
And not at all while the service starts: nearly everything start-up allocates (modules,
classes, the app) stays alive, and collecting it again and again cost a tenth of a start's
CPU.

    pause_for_start_up()    # first thing, before the service's modules are imported
    tune_for_serving()      # once, after start-up and before serving
"""

from __future__ import annotations

import gc

# Young collections every 50,000 allocations: most of a request's objects are freed by
# reference counting before one runs. A full collection is considered only after
# 50,000 x 20 x 100 allocations, and then still only if the old generation grew by 25%.
YOUNG_EVERY = 50_000
MIDDLE_EVERY = 20
OLD_EVERY = 100


def pause_for_start_up() -> None:
    """No collection until `tune_for_serving` (a start that fails exits before it)."""
    gc.disable()


def tune_for_serving() -> None:
    """Freeze what start-up built (modules, classes, settings, the ensemble) so that no
    collection scans it again, and space collections out for a long-running server."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_EVERY, MIDDLE_EVERY, OLD_EVERY)
    gc.enable()
