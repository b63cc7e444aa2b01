"""What a pipeline run reports, as small frozen dataclasses.

A run sends any number of progress events and then exactly one terminal event, `Done` or
`Failed` (unless it is cancelled, in which case nobody is listening any more).

The pipeline produces them; the api layer encodes them and telemetry (later: the transcript,
the limiter) consumes them. They live outside every one of those packages, beside
`errors.py`, so that a consumer depends on the events and never on the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ServiceError
from .llm import FinishReason, Usage


@dataclass(frozen=True, slots=True)
class PublicError:
    """The part of a `ServiceError` a client may see."""

    code: str
    message: str

    @classmethod
    def of(cls, error: ServiceError) -> PublicError:
        return cls(code=error.code, message=error.public_message)


@dataclass(frozen=True, slots=True)
class AgentStarted:
    agent: str


@dataclass(frozen=True, slots=True)
class AgentRetrying:
    """An agent's call failed in a way that may pass: `attempt` comes after `delay_ms`."""

    agent: str
    attempt: int
    model: str
    error: PublicError
    delay_ms: float


@dataclass(frozen=True, slots=True)
class AgentCompleted:
    """`model` is the one that answered (a fallback, when the primary failed)."""

    agent: str
    text: str
    model: str = ""
    attempts: int = 1
    retries: int = 0
    elapsed_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class AgentFailed:
    """`error.code` is the reason: an upstream code, or `agent_cut` for a straggler."""

    agent: str
    error: PublicError
    attempts: int = 1
    retries: int = 0
    elapsed_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class SummaryStarted:
    summarizer: str
    agents: tuple[str, ...]
    missing: tuple[str, ...]
    ensemble_version: str = ""


@dataclass(frozen=True, slots=True)
class SummaryDelta:
    summarizer: str
    text: str


@dataclass(frozen=True, slots=True)
class SummaryRestarted:
    """The summary broke off after some text and starts over on `model`: drop the text so far."""

    summarizer: str
    model: str
    error: PublicError


@dataclass(frozen=True, slots=True)
class AgentCounts:
    succeeded: int = 0
    failed: int = 0
    cut: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"succeeded": self.succeeded, "failed": self.failed, "cut": self.cut}


@dataclass(frozen=True, slots=True)
class Timings:
    """Milliseconds since the run started, except `agents_ms`: each agent's own duration."""

    agents_ms: Mapping[str, float]
    first_token_ms: float | None
    total_ms: float


@dataclass(frozen=True, slots=True)
class Done:
    """`models` maps each member that answered to the model that did; `finish_reason` says
    why the summary ended (`length`: its max_tokens cut it), None where it is not known."""

    summarizer: str
    usage: Mapping[str, Usage]
    timings: Timings
    agents: AgentCounts = AgentCounts()
    models: Mapping[str, str] = field(default_factory=dict)
    ensemble_version: str = ""
    finish_reason: FinishReason | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """`agents` is None when the run ended before the agents' outcomes were known."""

    source: str
    error: PublicError
    usage: Mapping[str, Usage] = field(default_factory=dict)
    agents: AgentCounts | None = None


Event = (
    AgentStarted
    | AgentRetrying
    | AgentCompleted
    | AgentFailed
    | SummaryStarted
    | SummaryDelta
    | SummaryRestarted
    | Done
    | Failed
)
TERMINAL_EVENTS = (Done, Failed)
