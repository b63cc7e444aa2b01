"""The orchestration, free of HTTP: a request and an ensemble in, typed events out."""

from ..events import (
    TERMINAL_EVENTS,
    AgentCompleted,
    AgentCounts,
    AgentFailed,
    AgentStarted,
    Done,
    Event,
    Failed,
    PublicError,
    SummaryDelta,
    SummaryRestarted,
    SummaryStarted,
    Timings,
)
from .retry import RetryPolicy
from .run import PipelineRequest, run_pipeline

__all__ = [
    "TERMINAL_EVENTS",
    "AgentCompleted",
    "AgentCounts",
    "AgentFailed",
    "AgentStarted",
    "Done",
    "Event",
    "Failed",
    "PipelineRequest",
    "PublicError",
    "RetryPolicy",
    "SummaryDelta",
    "SummaryRestarted",
    "SummaryStarted",
    "Timings",
    "run_pipeline",
]
