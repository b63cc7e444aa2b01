"""The orchestration, free of HTTP: a request and an ensemble in, typed events out."""

from .events import (
    TERMINAL_EVENTS,
    AgentCompleted,
    AgentFailed,
    AgentStarted,
    Done,
    Event,
    Failed,
    PublicError,
    SummaryDelta,
    SummaryStarted,
    Timings,
)
from .run import PipelineRequest, run_pipeline

__all__ = [
    "TERMINAL_EVENTS",
    "AgentCompleted",
    "AgentFailed",
    "AgentStarted",
    "Done",
    "Event",
    "Failed",
    "PipelineRequest",
    "PublicError",
    "SummaryDelta",
    "SummaryStarted",
    "Timings",
    "run_pipeline",
]
