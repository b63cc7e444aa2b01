"""What a pipeline run reports, as small frozen dataclasses, each declaring everything about
its kind in one place.

A run sends any number of progress events and then exactly one terminal event, `Done` or
`Failed` (unless it is cancelled, in which case nobody is listening any more).

Each event class declares, beside its fields:
- `KIND`, the wire name (the SSE `event:` line and the JSON `type`);
- `wire()`, its frame's `status`, `source` and its own fields, and `Fields`, the pydantic
  model those fields are published as (api/contract/event_schemas.py builds the document);
- `OPENAI`, what it is in a chat completion: the answer's text (`content`), a line of the
  agents' work (`reasoning`, with `reasoning_line` and the `fanout` extension's fields),
  the finish (`finish`) or the failure (`error`);
- `RESTARTS_ANSWER`: the answer's text so far is void;
- `ANSWER`: an agent's outcome, listed in a whole completion's `fanout.answers`;
- `STORED`: whether the transcript keeps it for replay and resume.
The SSE encoder, the published schemas, the OpenAI mapping and the page's test read these;
nothing else spells a kind out. Adding a kind: declare it here, produce it in the pipeline,
show it on the page (service/web/static/turn.js) if people should see it.

The pipeline produces them; the api layer encodes them and telemetry, the recorder and the
limiter's settlement consume them. They live outside every one of those packages, beside
`errors.py`, so that a consumer depends on the events and never on the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field

from .errors import ServiceError
from .llm import FinishReason, Usage
from .shapes import AgentCounts as AgentCountsShape
from .shapes import Charge, Cost, EventError, Shape, TokenUsage
from .shapes import Timings as TimingsShape

OpenAIRole = Literal["content", "reasoning", "finish", "error"]


@dataclass(frozen=True, slots=True)
class PublicError:
    """The part of a `ServiceError` a client may see."""

    code: str
    message: str

    @classmethod
    def of(cls, error: ServiceError) -> PublicError:
        return cls(code=error.code, message=error.public_message)

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Step:
    """Which step of a deliberation an agent's event belongs to: its phase (`answer`, the
    members' first answers; `revise`, `layer`, `review`, `select` in later steps) and its
    round (0 for the first answers, then 1, 2... as the strategy goes on). Kept with the
    answers; on the wire (`phase`, `round`) for every step but the first answers."""

    phase: str = "answer"
    round: int = 0


FIRST_STEP = Step()


class NoFields(Shape):
    """An event with nothing but the fields every event has."""


class StepFields(Shape):
    """What an agent's event adds in a later step of a deliberation (absent in the first)."""

    phase: str | None = Field(default=None, description="The step: revise, layer, review or select")
    round: int | None = Field(default=None, description="The step's round (1 for the first)")


def step_fields(step: Step) -> dict[str, Any]:
    """`phase` and `round` of an agent's frame, or nothing for the first answers."""
    return {} if step == FIRST_STEP else {"phase": step.phase, "round": step.round}


class EventKind:
    """What every event class declares (see the module's docstring)."""

    __slots__ = ()

    KIND: ClassVar[str]
    Fields: ClassVar[type[Shape]] = NoFields
    OPENAI: ClassVar[OpenAIRole] = "reasoning"
    # The wire fields an agent's chunk repeats in its `fanout` extension, as (wire, extension).
    EXTENSION: ClassVar[tuple[tuple[str, str], ...]] = ()
    # The answer's text so far is void (a whole completion drops it).
    RESTARTS_ANSWER: ClassVar[bool] = False
    # An agent's outcome: a whole completion lists it in `fanout.answers`.
    ANSWER: ClassVar[bool] = False
    STORED: ClassVar[bool] = True
    TERMINAL: ClassVar[bool] = False
    # The schema's name in the published document, when it is not the class's + "Event".
    SCHEMA_NAME: ClassVar[str | None] = None

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        """(status, source, its own fields) of its frame."""
        raise NotImplementedError

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        """Its line in OpenAI's `reasoning_content`, from its frame's data; None: no line."""
        return None


# --- the agents ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentStarted(EventKind):
    KIND = "agent.started"
    Fields = StepFields

    agent: str
    step: Step = FIRST_STEP

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        return f"Sending to {self.agent}", self.agent, step_fields(self.step)

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        return f"[{data.get('source', '')}] thinking...\n"


class AgentRetryingFields(StepFields):
    attempt: int = Field(description="The call that comes next (2 for the first retry)")
    model: str
    error: EventError
    delay_ms: float = Field(description="The wait before that call")


@dataclass(frozen=True, slots=True)
class AgentRetrying(EventKind):
    """An agent's call failed in a way that may pass: `attempt` comes after `delay_ms`."""

    KIND = "agent.retrying"
    Fields = AgentRetryingFields
    EXTENSION = (("model", "model"), ("attempt", "attempt"), ("error", "error"))

    agent: str
    attempt: int
    model: str
    error: PublicError
    delay_ms: float
    step: Step = FIRST_STEP

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields = {
            "attempt": self.attempt,
            "model": self.model,
            "error": self.error.as_dict(),
            "delay_ms": self.delay_ms,
        }
        status = f"Retrying {self.agent} (attempt {self.attempt})"
        return status, self.agent, fields | step_fields(self.step)

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        code = data.get("error", {}).get("code", "")
        return f"[{data.get('source', '')}] retrying, attempt {data.get('attempt')} ({code})\n"


class AgentDeltaFields(StepFields):
    message: str = Field(description="The next piece of the agent's answer")
    attempt: int = Field(description="The call the text comes from (1 for the first)")


@dataclass(frozen=True, slots=True)
class AgentDelta(EventKind):
    """The next piece of an agent's answer as it streams (pieces a few milliseconds apart
    arrive as one). Its `agent.completed` text is the pieces since the last restart."""

    KIND = "agent.delta"
    Fields = AgentDeltaFields
    EXTENSION = (("attempt", "attempt"),)

    agent: str
    text: str
    attempt: int = 1
    step: Step = FIRST_STEP

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields = {"message": self.text, "attempt": self.attempt}
        return "Streaming", self.agent, fields | step_fields(self.step)

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        return str(data.get("message", ""))


class AgentRestartedFields(StepFields):
    attempt: int = Field(description="The call whose text follows")
    model: str = Field(description="The model that call went to")
    error: EventError | None = Field(
        default=None, description="Why the text so far is void; absent when a hedge won"
    )
    discard: Literal[True] = Field(description="Drop this agent's text received so far")


@dataclass(frozen=True, slots=True)
class AgentRestarted(EventKind):
    """An agent's text so far is void: a retry, a fallback or a hedge took over, and the
    text of `attempt` follows."""

    KIND = "agent.restarted"
    Fields = AgentRestartedFields
    EXTENSION = (
        ("attempt", "attempt"),
        ("model", "model"),
        ("error", "error"),
        ("discard", "discard"),
    )

    agent: str
    attempt: int
    model: str
    error: PublicError | None = None
    step: Step = FIRST_STEP

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields: dict[str, Any] = {"attempt": self.attempt, "model": self.model}
        if self.error is not None:
            fields["error"] = self.error.as_dict()
        fields["discard"] = True
        fields |= step_fields(self.step)
        return f"Restarting {self.agent} on {self.model}", self.agent, fields

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        return f"\n[{data.get('source', '')}] starting over on {data.get('model', '')}:\n"


class AgentCompletedFields(StepFields):
    message: str = Field(description="The agent's answer")
    model: str = Field(description="The model that gave it (a fallback, if the primary failed)")
    attempts: int
    cost_usd: float | None = Field(
        default=None,
        description="What the answering call cost in US dollars; absent when not known",
    )


@dataclass(frozen=True, slots=True)
class AgentCompleted(EventKind):
    """`model` is the one that answered (a fallback, when the primary failed); `usage` the
    tokens of this answer alone (None where the provider reported none)."""

    KIND = "agent.completed"
    Fields = AgentCompletedFields
    EXTENSION = (
        ("model", "model"),
        ("attempts", "attempts"),
        ("message", "text"),
        ("cost_usd", "cost_usd"),
    )
    ANSWER = True

    agent: str
    text: str
    model: str = ""
    attempts: int = 1
    retries: int = 0
    elapsed_ms: float = 0.0
    step: Step = FIRST_STEP
    cost_usd: float | None = None
    # The answering call's tokens (the recorder keeps them with the answer); not on the wire.
    usage: Usage | None = None

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields: dict[str, Any] = {
            "message": self.text,
            "model": self.model,
            "attempts": self.attempts,
        }
        if self.cost_usd is not None:
            fields["cost_usd"] = self.cost_usd
        return f"Received from {self.agent}", self.agent, fields | step_fields(self.step)

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        source, model = data.get("source", ""), data.get("model", "")
        return f"[{source}] answered ({model}):\n{data.get('message', '')}\n\n"


class AgentFailedFields(StepFields):
    error: EventError
    attempts: int


@dataclass(frozen=True, slots=True)
class AgentFailed(EventKind):
    """`error.code` is the reason: an upstream code, or `agent_cut` for a straggler."""

    KIND = "agent.failed"
    Fields = AgentFailedFields
    EXTENSION = (("attempts", "attempts"), ("error", "error"))
    ANSWER = True

    agent: str
    error: PublicError
    attempts: int = 1
    retries: int = 0
    elapsed_ms: float = 0.0
    step: Step = FIRST_STEP

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields = {"error": self.error.as_dict(), "attempts": self.attempts}
        return f"Failed {self.agent}", self.agent, fields | step_fields(self.step)

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        return f"[{data.get('source', '')}] no answer ({data.get('error', {}).get('code', '')})\n\n"


# --- the steps of a deliberation ------------------------------------------------------------


class RoundStartedFields(Shape):
    phase: str = Field(description="The step: answer, revise, layer, review or select")
    round: int = Field(description="0 for the first answers, then 1, 2...")
    agents: list[str] = Field(description="The members asked in this step")


@dataclass(frozen=True, slots=True)
class RoundStarted(EventKind):
    """A step of a strategy with more than one begins (`source` is the strategy)."""

    KIND = "round.started"
    Fields = RoundStartedFields

    strategy: str
    step: Step
    agents: tuple[str, ...]

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields = {"phase": self.step.phase, "round": self.step.round, "agents": list(self.agents)}
        return f"{self.step.phase.capitalize()}, round {self.step.round}", self.strategy, fields

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        return f"\n--- {data.get('phase', '')}, round {data.get('round', '')} ---\n"


class RoundCompletedFields(Shape):
    phase: str
    round: int
    answered: list[str] = Field(description="The members that answered in this step")
    missing: list[str] = Field(description="The members without an answer in this step")


@dataclass(frozen=True, slots=True)
class RoundCompleted(EventKind):
    KIND = "round.completed"
    Fields = RoundCompletedFields

    strategy: str
    step: Step
    answered: tuple[str, ...]
    missing: tuple[str, ...]

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields = {
            "phase": self.step.phase,
            "round": self.step.round,
            "answered": list(self.answered),
            "missing": list(self.missing),
        }
        status = f"{self.step.phase.capitalize()}, round {self.step.round}: done"
        return status, self.strategy, fields


class ReviewFields(Shape):
    ranking: list[str] | None = Field(
        description="The answers' agents, best first, as this reviewer ranked them; null when "
        "the ranking could not be read"
    )
    labels: dict[str, str] = Field(
        description="What the reviewer was shown: each label (Response A...) and its agent"
    )
    error: EventError | None = Field(
        default=None, description="Why the ranking could not be read (the run goes on)"
    )


@dataclass(frozen=True, slots=True)
class CouncilReview(EventKind):
    """One council member's ranking of the others' answers (`source` is the reviewer)."""

    KIND = "council.review"
    Fields = ReviewFields

    reviewer: str
    ranking: tuple[str, ...] | None
    labels: Mapping[str, str]
    error: PublicError | None = None

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields: dict[str, Any] = {
            "ranking": list(self.ranking) if self.ranking is not None else None,
            "labels": dict(self.labels),
        }
        if self.error is not None:
            fields["error"] = self.error.as_dict()
        return f"Ranked by {self.reviewer}", self.reviewer, fields

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        ranking = data.get("ranking")
        shown = " > ".join(ranking) if ranking else "(no ranking could be read)"
        return f"[{data.get('source', '')}] ranks: {shown}\n"


class RankShape(Shape):
    agent: str
    average_rank: float = Field(description="1 is best; the mean over the reviews that ranked it")
    reviews: int = Field(description="How many reviews ranked it")


class RankingFields(Shape):
    ranking: list[RankShape] = Field(description="Every answer's agent, best first")


@dataclass(frozen=True, slots=True)
class Rank:
    agent: str
    average_rank: float
    reviews: int


@dataclass(frozen=True, slots=True)
class CouncilRanking(EventKind):
    """The council's aggregate ranking: every answer's mean place over the reviews."""

    KIND = "council.ranking"
    Fields = RankingFields

    strategy: str
    ranking: tuple[Rank, ...]

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        ranking = [
            {"agent": r.agent, "average_rank": r.average_rank, "reviews": r.reviews}
            for r in self.ranking
        ]
        return "Aggregate ranking", self.strategy, {"ranking": ranking}

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        places = ", ".join(
            f"{r.get('agent')} ({r.get('average_rank')})" for r in data.get("ranking", [])
        )
        return f"[council] aggregate ranking: {places}\n"


class TallyGroupShape(Shape):
    agents: list[str] = Field(description="The agents that gave this answer")
    votes: int


class VoteTallyFields(Shape):
    method: str = Field(description="exact (the same answer) or similar (the most alike)")
    groups: list[TallyGroupShape] = Field(description="The answers' groups, most votes first")


@dataclass(frozen=True, slots=True)
class VoteTally(EventKind):
    KIND = "vote.tally"
    Fields = VoteTallyFields

    strategy: str
    method: str
    groups: tuple[tuple[str, ...], ...]

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        groups = [{"agents": list(g), "votes": len(g)} for g in self.groups]
        return "Votes counted", self.strategy, {"method": self.method, "groups": groups}

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        groups = "; ".join(
            f"{', '.join(g.get('agents', []))}: {g.get('votes')}" for g in data.get("groups", [])
        )
        return f"[vote] {data.get('method', '')} tally: {groups}\n"


class AnswerChosenFields(Shape):
    reason: str = Field(description="Why this answer was chosen")


@dataclass(frozen=True, slots=True)
class AnswerChosen(EventKind):
    """A vote or a selection chose one agent's answer as the reply (`source` is the agent)."""

    KIND = "answer.chosen"
    Fields = AnswerChosenFields

    agent: str
    reason: str

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        return f"Chose {self.agent}'s answer", self.agent, {"reason": self.reason}

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        return f"[{data.get('source', '')}] chosen: {data.get('reason', '')}\n"


# --- the summary -----------------------------------------------------------------------------


class SummaryStartedFields(Shape):
    agents: list[str] = Field(description="The agents whose answers are combined")
    missing: list[str] = Field(description="The agents without an answer")
    ensemble_version: str | None = None


@dataclass(frozen=True, slots=True)
class SummaryStarted(EventKind):
    KIND = "summary.started"
    Fields = SummaryStartedFields

    summarizer: str
    agents: tuple[str, ...]
    missing: tuple[str, ...]
    ensemble_version: str = ""

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields: dict[str, Any] = {"agents": list(self.agents), "missing": list(self.missing)}
        if self.ensemble_version:
            fields["ensemble_version"] = self.ensemble_version
        return f"Combining via {self.summarizer}", self.summarizer, fields

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        return f"[{data.get('source', '')}] combining {len(data.get('agents', []))} answer(s)\n"


class SummaryDeltaFields(Shape):
    message: str = Field(description="The next piece of the summary")


@dataclass(frozen=True, slots=True)
class SummaryDelta(EventKind):
    KIND = "summary.delta"
    Fields = SummaryDeltaFields
    OPENAI = "content"

    summarizer: str
    text: str

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        return "Streaming", self.summarizer, {"message": self.text}


class SummaryRestartedFields(Shape):
    model: str = Field(description="The model the summary starts again on")
    error: EventError
    discard: Literal[True] = Field(description="Drop the summary text received so far")


@dataclass(frozen=True, slots=True)
class SummaryRestarted(EventKind):
    """The summary broke off after some text and starts over on `model`: drop the text so far."""

    KIND = "summary.restarted"
    Fields = SummaryRestartedFields
    EXTENSION = (("model", "model"), ("error", "error"), ("discard", "discard"))
    RESTARTS_ANSWER = True

    summarizer: str
    model: str
    error: PublicError

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields = {"model": self.model, "error": self.error.as_dict(), "discard": True}
        return f"Restarting the summary on {self.model}", self.summarizer, fields

    @staticmethod
    def reasoning_line(data: Mapping[str, Any]) -> str | None:
        return f"[{data.get('source', '')}] restarting the summary on {data.get('model', '')}\n"


# --- the end ---------------------------------------------------------------------------------


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "agents_ms": dict(self.agents_ms),
            "first_token_ms": self.first_token_ms,
            "total_ms": self.total_ms,
        }


@dataclass(frozen=True, slots=True)
class Wasted:
    """Calls of one member on one model whose output the run did not use: a straggler cut,
    a hedge that lost, a call that failed after the provider had begun to answer (or whose
    answer was empty). Their tokens are the provider's where it reported them, else reckoned
    from what was sent and received (pipeline/waste.py)."""

    member: str
    model: str
    calls: int
    usage: Usage
    # None: the model's price is not known.
    cost_usd: float | None


class DoneFields(Shape):
    agents: AgentCountsShape
    models: dict[str, str] = Field(description="Each member that answered: the model that did")
    usage: dict[str, TokenUsage] = Field(description="Tokens, per agent and summarizer")
    timings: TimingsShape
    ensemble_version: str | None = None
    finish_reason: FinishReason | None = Field(
        default=None,
        description=(
            "Why the summary ended: `stop` (it was done), `length` (its `max_tokens` cut it), "
            "`content_filter` (the provider's filter stopped it)"
        ),
    )
    cost: Cost | None = Field(
        default=None,
        description="What the run's calls cost in US dollars, from the tokens each reported "
        "(docs/evaluation.md says where prices come from)",
    )
    # Added by the encoder when limits are on: the event itself does not know the charge.
    charged: Charge | None = Field(
        default=None, description="With rate limits on: what the request was charged"
    )


@dataclass(frozen=True, slots=True)
class Done(EventKind):
    """`models` maps each member that answered to the model that did; `finish_reason` says
    why the summary ended (`length`: its max_tokens cut it), None where it is not known."""

    KIND = "done"
    Fields = DoneFields
    OPENAI = "finish"
    TERMINAL = True

    summarizer: str
    usage: Mapping[str, Usage]
    timings: Timings
    agents: AgentCounts = AgentCounts()
    models: Mapping[str, str] = field(default_factory=dict)
    ensemble_version: str = ""
    finish_reason: FinishReason | None = None
    # Each member's dollars; None: no price was asked for (an ensemble without members).
    cost: Mapping[str, float | None] | None = None
    # The calls the run paid for and did not use, apart from `usage` and `cost`.
    wasted: tuple[Wasted, ...] = ()

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields: dict[str, Any] = {
            "final": True,
            "agents": self.agents.as_dict(),
            "models": dict(self.models),
            "usage": {caller: u.as_dict() for caller, u in self.usage.items()},
            "timings": self.timings.as_dict(),
        }
        if self.ensemble_version:
            fields["ensemble_version"] = self.ensemble_version
        if self.finish_reason is not None:
            fields["finish_reason"] = self.finish_reason
        cost = self.cost_fields()
        if cost is not None:
            fields["cost"] = cost
        return "Completed", self.summarizer, fields

    def cost_fields(self) -> dict[str, Any] | None:
        """`cost` as it is sent and stored: the total (the wasted calls included), each
        member's answering calls, and the wasted calls apart; None when no price was asked
        for. An unknown price makes the sums it is part of unknown (None)."""
        if self.cost is None:
            return None
        wasted = _known_sum([w.cost_usd for w in self.wasted])
        used = _known_sum(list(self.cost.values()))
        total = None if used is None or wasted is None else round(used + wasted, 8)
        return {"total_usd": total, "members": dict(self.cost), "wasted_usd": wasted}


def _known_sum(costs: list[float | None]) -> float | None:
    return None if None in costs else round(sum(c or 0.0 for c in costs), 8)


class FailedFields(Shape):
    error: EventError
    usage: dict[str, TokenUsage]
    agents: AgentCountsShape | None = None


@dataclass(frozen=True, slots=True)
class Failed(EventKind):
    """`agents` is None when the run ended before the agents' outcomes were known."""

    KIND = "error"
    Fields = FailedFields
    OPENAI = "error"
    TERMINAL = True
    SCHEMA_NAME = "ErrorEvent"

    source: str
    error: PublicError
    usage: Mapping[str, Usage] = field(default_factory=dict)
    agents: AgentCounts | None = None
    # The calls the run paid for and did not use (as `Done` has them): not sent, but
    # counted in the usage ledger and the limiter's settlement.
    wasted: tuple[Wasted, ...] = ()

    def wire(self) -> tuple[str, str, dict[str, Any]]:
        fields: dict[str, Any] = {
            "final": True,
            "error": self.error.as_dict(),
            "usage": {caller: u.as_dict() for caller, u in self.usage.items()},
        }
        if self.agents is not None:
            fields["agents"] = self.agents.as_dict()
        return "error", self.source, fields


def spent_tokens(end: Done | Failed) -> int:
    """The tokens a run's end says its calls used: the answers' as their providers reported
    them, and the wasted calls' (reckoned where none were reported). The usage ledger counts
    these, the limiter settles them, and `done`'s `charged` says so."""
    used = [*end.usage.values(), *(wasted.usage for wasted in end.wasted)]
    return sum(u.prompt_tokens + u.completion_tokens for u in used)


Event = (
    AgentStarted
    | AgentRetrying
    | AgentDelta
    | AgentRestarted
    | AgentCompleted
    | AgentFailed
    | RoundStarted
    | RoundCompleted
    | CouncilReview
    | CouncilRanking
    | VoteTally
    | AnswerChosen
    | SummaryStarted
    | SummaryDelta
    | SummaryRestarted
    | Done
    | Failed
)
# Every kind, in the order the published document lists them (that of `Event`).
EVENT_KINDS: tuple[type[EventKind], ...] = get_args(Event)
KINDS: Mapping[str, type[EventKind]] = {kind.KIND: kind for kind in EVENT_KINDS}
TERMINAL_EVENTS = tuple(kind for kind in EVENT_KINDS if kind.TERMINAL)
