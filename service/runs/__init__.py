"""A run's life apart from any one response: its frames as they come (live.py) and the
driver that feeds them from the pipeline to every consumer (driver.py)."""

from .driver import RunDriver
from .live import LiveRun, LiveRuns

__all__ = ["LiveRun", "LiveRuns", "RunDriver"]
