"""The JSON the API answers with, and the query strings it reads, as pydantic models: the
routes build their answers from these (`respond`) and read their queries with them
(`read_query`), and /openapi.json is generated from the same classes (contract.py).

    return respond(MessageList(messages=[...]))
    query = read_query(HistoryQuery)
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from ...errors import InvalidRequest
from ...event_ids import MAX_EVENT_ID
from ...shapes import Cost, Shape, Timings, TokenUsage
from .validation import CURSOR_PATTERN, ClientId, first_problem

if TYPE_CHECKING:
    from ...storage.keys import KeyRecord

# When something happened: ISO 8601 with the UTC offset.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


def _day(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError("expected a day, YYYY-MM-DD") from None


Day = Annotated[str, AfterValidator(_day), WithJsonSchema({"type": "string", "format": "date"})]
Status = Literal["running", "completed", "failed", "cancelled", "interrupted"]


def respond(body: Shape) -> dict[str, Any]:
    return body.model_dump(mode="json", by_alias=True)


# --- errors ----------------------------------------------------------------------------------


class ErrorDetail(Shape):
    code: str = Field(description="Stable, for programs: `invalid_request`, `not_found`, ...")
    message: str = Field(description="For people; never holds a provider's own text")
    field: str | None = Field(description="The request field (or header) at fault, if one is")


class ErrorEnvelope(Shape):
    """Every error outside /v1/."""

    error: ErrorDetail


class OpenAIErrorDetail(Shape):
    message: str
    type: str = Field(description="OpenAI's error type: `invalid_request_error`, ...")
    param: str | None
    code: str | None


class OpenAIErrorEnvelope(Shape):
    """Every error under /v1/, in OpenAI's shape (the SDKs raise their own classes)."""

    error: OpenAIErrorDetail


class ErrorCode(Shape):
    code: str


# --- health and the ensemble -------------------------------------------------------------------


class Health(Shape):
    status: Literal["ok"]


class Readiness(Shape):
    status: Literal["ready", "draining"]
    open_streams: int


class Member(Shape):
    name: str
    model: str


class EnsembleInfo(Shape):
    agents: list[Member]
    summarizer: Member | None = Field(
        description="The summarizer (a chairman, aggregator or selector, as the strategy "
        "has it); null for a vote"
    )
    min_agents: int
    strategy: str = Field(description="How the members deliberate: docs/ensemble.md")
    summarizer_role: str | None = Field(
        description="What the summarizer does in this strategy: summarizer, chairman, "
        "aggregator or selector"
    )
    calls_per_request: int = Field(
        description="Upstream calls one request makes when every member answers at once"
    )


class EnsembleProblem(Shape):
    message: str
    at: Timestamp


class EnsembleStatus(Shape):
    version: str
    loaded_at: Timestamp
    source: str
    default: str
    ensembles: dict[str, EnsembleInfo]
    files: list[str]
    problem: EnsembleProblem | None = Field(
        description="Why the latest edit of the ensemble files was refused, if it was"
    )


# --- conversations ---------------------------------------------------------------------------


class AgentAnswer(Shape):
    agent: str
    model: str | None
    outcome: Literal["completed", "failed", "cut"]
    text: str | None
    error: ErrorCode | None
    attempts: int
    latency_ms: float | None
    usage: TokenUsage | None
    phase: str = Field(
        description="The step of the deliberation it answers in: answer (the first answers), "
        "revise, layer, review or select"
    )
    round: int = Field(description="0 for the first answers, then 1, 2... as the strategy goes on")
    cost_usd: float | None = Field(
        default=None,
        description="What the answering call cost in US dollars; null when not known (or "
        "stored before costs were kept)",
    )


class MessageRef(Shape):
    message_id: str
    version: int


class Message(Shape):
    message_id: str
    version: int = Field(
        description="1, then one more for each message sent again under the id with other "
        "text, each edit and each regenerate; the id names the newest"
    )
    parent: MessageRef | None = Field(
        description="The turn this one follows in its conversation; null for the first"
    )
    current: bool = Field(
        description="On its conversation's current branch: the path from the newest turn "
        "back to the first (an edit or a regenerate starts a new one)"
    )
    conversation_id: str
    question: str
    status: Status
    summary: str | None
    error: ErrorCode | None
    ensemble: str | None
    ensemble_version: str | None
    models: dict[str, str]
    usage: dict[str, TokenUsage]
    timings: Timings | None
    cost: Cost | None = Field(
        default=None,
        description="What its calls cost in US dollars, as its `done` event said; null for a "
        "run that did not complete, or one stored before costs were kept",
    )
    trace_id: str | None
    created_at: Timestamp
    finished_at: Timestamp | None
    agents: list[AgentAnswer]


class ConversationSummary(Shape):
    id: str
    title: str
    created_at: Timestamp
    updated_at: Timestamp


class ConversationPage(Shape):
    conversations: list[ConversationSummary]
    next_cursor: str | None = Field(description="Pass it back as `cursor` for the next page")


class Conversation(ConversationSummary):
    messages: list[Message]


class Cancelling(Shape):
    status: Literal["cancelling"]


# --- keys and usage ------------------------------------------------------------------------------

Scope = Literal["process", "history", "admin"]


class Key(Shape):
    id: str
    prefix: str = Field(description="The key's first characters, to recognise it by")
    user: str
    tenant: str
    role: Literal["user", "admin"]
    scopes: list[Scope]
    name: str | None
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None

    @classmethod
    def of(cls, record: KeyRecord) -> Key:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return cls(
            id=record.id,
            prefix=record.prefix,
            user=record.user,
            tenant=record.tenant,
            role=record.role,  # type: ignore[arg-type]
            scopes=sorted(record.scopes),  # type: ignore[arg-type]
            name=record.name,
            created_at=record.created_at.isoformat(),
            expires_at=when(record.expires_at),
            revoked_at=when(record.revoked_at),
            last_used_at=when(record.last_used_at),
        )


class NewKeyCreated(Key):
    key: str = Field(description="The key itself: shown this once, never again")


class KeyList(Shape):
    keys: list[Key]


class UsageLine(Shape):
    day: Day
    user: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None = Field(
        description="Deprecated (use cost_usd): with PRICES_FILE, the tokens priced at that "
        "table today, in its currency; else null",
        json_schema_extra={"deprecated": True},
    )
    cost_usd: float | None = Field(
        description="US dollars, priced when each run ended (the ensemble's prices, else "
        "genai-prices' table); null when one of the line's calls had no known price, or was "
        "stored before costs were kept"
    )


class UsageTotal(Shape):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None = Field(description="The lines' dollars; null if one line's is")


class UsageReport(Shape):
    usage: list[UsageLine]
    total: UsageTotal


# --- evaluations the server runs ------------------------------------------------------------------


class Evaluation(Shape):
    """An evaluation the server runs: what it was asked, and how far it is."""

    id: str
    status: Status = Field(
        description="`running`; `completed`; `cancelled` (by its owner); `interrupted` (the "
        "server stopped: resume it); `failed` (`error` says why)"
    )
    dataset: str = Field(description="A data set the server ships, by name; `upload` if sent")
    ensembles: list[str] = Field(description="The ensembles evaluated (none: the default)")
    scorer: str
    judge: str | None = Field(description="The member that compares answers, if one does")
    total: int = Field(description="Results it will have: questions times contestants")
    done: int = Field(description="Results it has")
    spent_usd: float = Field(description="US dollars its calls have cost so far")
    error: ErrorCode | None
    created_at: Timestamp
    finished_at: Timestamp | None


class EvaluationDetail(Evaluation):
    tolerance: float
    concurrency: int
    max_cost_usd: float | None
    seed: int
    questions: int
    report: dict[str, Any] | None = Field(
        description="The report (rows with scores, intervals, latency, tokens and dollars; "
        "the ensemble against its best member; the judge's win rates), once it is done or "
        "was cancelled; as `llm-fanout eval` writes report.json"
    )


class EvaluationList(Shape):
    evaluations: list[Evaluation] = Field(description="Yours, newest first")


class EvaluationEvent(Shape):
    """An evaluation's progress: `eval.progress` as it goes (the newest state; a reader
    that falls behind skips to it), then one `eval.ended`."""

    type: Literal["eval.progress", "eval.ended"]
    evaluation_id: str
    status: Status
    phase: Literal["asking", "judging"]
    done: int
    total: int
    spent_usd: float
    error: ErrorCode | None


# --- OpenAI's models -----------------------------------------------------------------------------


class Model(Shape):
    id: str = Field(description="An ensemble's name")
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(Shape):
    object: Literal["list"]
    data: list[Model]


# --- query strings -------------------------------------------------------------------------------


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class HistoryQuery(Query):
    limit: int = Field(default=20, ge=1, le=100, description="Conversations per page")
    cursor: str | None = Field(
        default=None,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the page before",
    )
    user: ClientId | None = Field(
        default=None, description="An admin reads this user of its tenant"
    )


class EvaluationListQuery(Query):
    limit: int = Field(default=20, ge=1, le=100, description="Evaluations in the list")


class OwnerQuery(Query):
    user: ClientId | None = Field(
        default=None, description="An admin reads this user of its tenant"
    )


class UsageQuery(Query):
    from_: Day | None = Field(default=None, alias="from", description="First day, inclusive")
    to: Day | None = Field(default=None, description="Last day, inclusive")


class TenantUsageQuery(UsageQuery):
    user: ClientId | None = Field(default=None, description="Only this user of the tenant")


class EventsQuery(Query):
    last_event_id: int = Field(
        default=0,
        ge=0,
        le=MAX_EVENT_ID,
        description="Events after this id (the `Last-Event-ID` header wins)",
    )


Q = TypeVar("Q", bound=Query)


def _names(kind: type[Query]) -> set[str]:
    return {field.alias or name for name, field in kind.model_fields.items()}


def read_query(kind: type[Q]) -> Q:
    """The request's query string as `kind`; a bad value is a 400 naming its parameter, and
    so is one given twice (which of them would count is not for the server to guess)."""
    from quart import request  # here: `llm-fanout keys` reads these shapes, not requests

    for name, values in request.args.lists():
        if len(values) > 1 and name in _names(kind):
            raise InvalidRequest(f"{name}: given more than once", field=name)
    try:
        return kind.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise first_problem(exc) from exc
