"""What a pipeline run reports, as small frozen dataclasses; the api layer encodes them.

A run sends any number of progress events and then exactly one terminal event, `Done` or
`Failed` (unless it is cancelled, in which case nobody is listening any more).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ServiceError
from ..llm import Usage


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
class AgentCompleted:
    agent: str
    text: str


@dataclass(frozen=True, slots=True)
class AgentFailed:
    agent: str
    error: PublicError


@dataclass(frozen=True, slots=True)
class SummaryStarted:
    summarizer: str
    agents: tuple[str, ...]
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SummaryDelta:
    summarizer: str
    text: str


@dataclass(frozen=True, slots=True)
class Timings:
    """Milliseconds since the run started, except `agents_ms`: each agent's own duration."""

    agents_ms: Mapping[str, float]
    first_token_ms: float | None
    total_ms: float


@dataclass(frozen=True, slots=True)
class Done:
    summarizer: str
    usage: Mapping[str, Usage]
    timings: Timings


@dataclass(frozen=True, slots=True)
class Failed:
    source: str
    error: PublicError
    usage: Mapping[str, Usage] = field(default_factory=dict)


Event = AgentStarted | AgentCompleted | AgentFailed | SummaryStarted | SummaryDelta | Done | Failed
TERMINAL_EVENTS = (Done, Failed)
