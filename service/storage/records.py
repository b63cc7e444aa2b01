"""What the store hands back: small frozen records, free of SQLAlchemy rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Status = Literal["running", "completed", "failed", "cancelled", "interrupted"]
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled", "interrupted"})


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose rows: a user of a tenant. Ids are unique per owner only."""

    tenant: str
    user: str


@dataclass(frozen=True, slots=True)
class StoredEnd:
    """How a finished message's stored stream ends: its last event (0 and None with none)."""

    last_event_id: int
    last_type: str | None
    conversation_id: str


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event of a message's stream, exactly as it was sent."""

    event_id: int
    type: str
    data: str


@dataclass(frozen=True, slots=True)
class HistoryTurn:
    question: str
    summary: str


@dataclass(frozen=True, slots=True)
class MessageStart:
    """A message a route asks to start, as the store takes it: one record from the route
    through the store to the query. `question` None is a regenerate of the stored text."""

    message_id: str
    conversation_id: str | None
    question: str | None
    ensemble: str
    ensemble_version: str
    trace_id: str | None
    # The budget of the earlier turns the new message is given (HISTORY_MAX_CHARS).
    history_max_chars: int
    regenerate: bool = False
    # The turn a new message follows, (message_id, version) in its conversation; None: the
    # conversation's newest. An edit or a regenerate keeps its own place.
    parent: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """The message was stored as `running`: this request runs it. `version` is 1 for a new
    id, the next one for a message sent again with other text, an edit or a regenerate."""

    pk: int
    conversation_id: str
    history: tuple[HistoryTurn, ...]
    version: int = 1
    # The text it runs: the stored one for a regenerate that sent none.
    question: str = ""


@dataclass(frozen=True, slots=True)
class ExistingMessage:
    """The newest message the owner sent under this id, and it is the same one sent again
    (text, conversation and ensemble): replay or join it."""

    pk: int
    conversation_id: str
    question: str
    status: Status
    instance: str
    version: int = 1


class UnknownMessage(LookupError):
    """A regenerate or an edit named a message id the owner never sent."""


class UnknownParent(LookupError):
    """A new message named a parent that is not a message of the owner's conversation."""


@dataclass(frozen=True, slots=True)
class AgentAnswer:
    agent: str
    model: str | None
    outcome: Literal["completed", "failed", "cut"]
    text: str | None
    error_code: str | None
    attempts: int
    latency_ms: float | None
    # The tokens of this answer's own call (None where the provider reported none): an agent
    # asked in three rounds has three rows, each with its own.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # The step of the deliberation it answered (the first answers: `answer`, round 0).
    phase: str = "answer"
    round: int = 0
    # What the answering call cost in US dollars (None: not known, or stored before).
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class MessageEnd:
    status: Status
    summary: str | None
    error_code: str | None
    models: dict[str, str]
    usage: dict[str, dict[str, int]]
    timings: dict[str, Any] | None
    # `done`'s `cost` (total_usd, members); None for a run that did not finish.
    cost: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class UsageLine:
    """Tokens one model used for one caller on one day: added to the usage ledger."""

    tenant: str
    user: str
    key_id: str  # "" without a key
    model: str
    day: str  # YYYY-MM-DD, UTC
    calls: int
    prompt_tokens: int
    completion_tokens: int
    # None when one of its calls has no known price: the line's dollars stay unknown.
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Phase:
    """What one write of a message adds: its new events and agent answers, and at the end
    its final state and the tokens it used."""

    message_pk: int
    events: Sequence[StoredEvent] = ()
    agents: Sequence[AgentAnswer] = ()
    end: MessageEnd | None = None
    usage: Sequence[UsageLine] = ()


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    id: str
    title: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MessageDetail:
    message_id: str
    version: int
    # The turn it follows in its conversation: (message_id, version), None for the first.
    parent: tuple[str, int] | None
    conversation_id: str
    question: str
    status: Status
    summary: str | None
    error_code: str | None
    ensemble: str | None
    ensemble_version: str | None
    models: dict[str, str]
    usage: dict[str, dict[str, int]]
    timings: dict[str, Any] | None
    trace_id: str | None
    created_at: datetime
    finished_at: datetime | None
    agents: tuple[AgentAnswer, ...]
    # On its conversation's current branch: the path from the newest turn back to the first.
    current: bool = True
    cost: dict[str, Any] | None = None
