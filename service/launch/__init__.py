"""Starting a message, for every route that runs one: admission, its span, storing it, and
then either running it or following the run that has it (message.py); the frames of a
stored run (stored_frames.py); a run its response never started, ended (unstarted.py).
Above `runs/` and `resources`, below the routes (api/) that call it."""

from .message import Launched, RunRequest, elsewhere, launch, set_outcome
from .stored_frames import RelayedFrames, StoredFrames
from .unstarted import EndUnstartedRuns

__all__ = [
    "EndUnstartedRuns",
    "Launched",
    "RelayedFrames",
    "RunRequest",
    "StoredFrames",
    "elsewhere",
    "launch",
    "set_outcome",
]
