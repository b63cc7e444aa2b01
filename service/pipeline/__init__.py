"""The orchestration, free of HTTP: a run context in, typed events out."""

from ..events import (
    TERMINAL_EVENTS,
    AgentCompleted,
    AgentCounts,
    AgentFailed,
    AgentRetrying,
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
from .context import PipelineRequest, RunContext, Turn
from .retry import RetryPolicy
from .run import run_pipeline
from .spend import Spend

__all__ = [
    "TERMINAL_EVENTS",
    "AgentCompleted",
    "AgentCounts",
    "AgentFailed",
    "AgentRetrying",
    "AgentStarted",
    "Done",
    "Event",
    "Failed",
    "PipelineRequest",
    "PublicError",
    "RetryPolicy",
    "RunContext",
    "Spend",
    "SummaryDelta",
    "SummaryRestarted",
    "SummaryStarted",
    "Timings",
    "Turn",
    "run_pipeline",
]
