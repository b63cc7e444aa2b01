"""Evaluations the server runs, for admins: POST /admin/evals starts one on a data set the
server ships (by name) or one sent in the body, as a background job; GET /admin/evals and
GET /admin/evals/{id} (with its report), its progress as events, its report as a page,
POST .../cancel and .../resume, and DELETE /admin/evals/{id}. Each belongs to the admin who
started it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from quart import Blueprint, Response, current_app, request

from ...errors import Conflict, InvalidRequest, NotFound, StorageDisabled
from ...evaluation.arguments import SCORERS
from ...evaluation.dataset import DatasetError, Item, dataset_of_rows, parse_dataset
from ...evaluation.jobs import (
    ENDED,
    PROGRESS,
    Asked,
    cancel_evaluation,
    resume_evaluation_job,
    start_evaluation,
)
from ...evaluation.report import html_page
from ...principal import Principal
from ...resources import Resources
from ...runs.live import FrameSource, Part
from ...storage import Store
from ...storage import evaluations as kept
from ...storage.evaluations import EvaluationRecord
from ...storage.records import Owner
from ...storage.store import owner_of
from ..access import current_principal, requires
from ..contract import schemas
from ..contract.document import documented, empty, event_stream, link, raw, returns
from ..contract.empty import no_content
from ..contract.schemas import read_query, respond
from ..contract.validation import NOT_BLANK, ClientId, checked_id, first_problem
from .front_door import slot_holding_stream

evals = Blueprint("evals", __name__)

# An evaluation's questions, as many as a body of 1 MiB holds; its contestants' answers at
# once, at most this many.
MAX_CONCURRENCY = 32
MAX_ENSEMBLES = 8
# How often a reader of an evaluation running on another instance looks at its row again.
POLL_S = 1.0
LAST_EVENT_ID = re.compile("^[0-9]{0,15}$")
# The report page: its own inline style and nothing else; no script at all.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

# Every scorer of the command but `regex`: a pattern from a data set runs on the server's
# own CPU, and one that backtracks without end (ReDoS) would hold it.
Scorer = Literal["exact", "includes", "numeric"]
assert set(get_args(Scorer)) == set(SCORERS) - {"regex"}


Answer = Annotated[str, Field(min_length=1, max_length=4_000, pattern=NOT_BLANK)]


class Row(BaseModel):
    """One question and the answers that count as right (any of them)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: ClientId | None = Field(default=None, description="Names it in the results")
    question: str = Field(min_length=1, max_length=32_000, pattern=NOT_BLANK)
    answer: Answer | list[Answer] = Field(description="The right answer, or several", min_length=1)


class NewEvaluation(BaseModel):
    """An evaluation of the ensemble (or those named) and each of its members alone, on one
    data set: one the server ships (`dataset`), or one sent as `rows` or as `jsonl` text
    (the shapes `llm-fanout eval` reads)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    dataset: ClientId | None = Field(
        default=None, description="A data set the server ships (EVAL_DATASETS_DIR), by name"
    )
    rows: list[Row] | None = Field(default=None, min_length=1)
    jsonl: str | None = Field(
        default=None,
        min_length=1,
        description='A line per question: {"question", "answer"} or OpenAI evals\' '
        '{"input", "ideal"}',
    )
    ensembles: list[ClientId] = Field(
        default_factory=list, max_length=MAX_ENSEMBLES, description="None: the default"
    )
    scorer: Scorer = "includes"
    tolerance: float = Field(default=1e-6, ge=0, le=1, description="numeric: relative")
    concurrency: int = Field(default=4, ge=1, le=MAX_CONCURRENCY, description="Asked at once")
    max_cost_usd: float | None = Field(
        default=None, ge=0, description="US dollars not to spend beyond"
    )
    limit: int | None = Field(default=None, ge=1, description="Only the first N questions")
    seed: int = Field(default=0, ge=0, le=2**31, description="Of the bootstrap intervals")
    judge: ClientId | None = Field(
        default=None,
        description="A member of the first ensemble that compares its answer with each "
        "member's, in both orders",
    )

    @model_validator(mode="after")
    def _one_data_set(self) -> NewEvaluation:
        given = [name for name in ("dataset", "rows", "jsonl") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give one data set: `dataset` (a name), `rows` or `jsonl`")
        return self


def _resources() -> Resources:
    resources: Resources = current_app.extensions["fanout"]
    return resources


def _store() -> Store:
    store = _resources().store
    if store is None:
        raise StorageDisabled()
    return store


def _items(body: NewEvaluation) -> tuple[str, list[Item]]:
    """The data set's name ("upload" for one sent) and its questions; a 400 naming the line
    or row at fault, or a 404 for a name the server has no data set by."""
    try:
        if body.rows is not None:
            rows = [row.model_dump(exclude_none=True) for row in body.rows]
            return "upload", dataset_of_rows(rows, "rows")
        if body.jsonl is not None:
            return "upload", parse_dataset(body.jsonl, "jsonl")
    except DatasetError as exc:
        raise InvalidRequest(str(exc), field="rows" if body.rows is not None else "jsonl") from exc
    assert body.dataset is not None
    return body.dataset, _shipped(body.dataset)


def _within_limits(items: list[Item], field: str) -> list[Item]:
    """Each question no longer than a message may be (MAX_MESSAGE_CHARS)."""
    longest = _resources().settings.max_message_chars
    for item in items:
        if len(item.question) > longest:
            raise InvalidRequest(
                f"{field}: question {item.key} is longer than {longest} characters", field=field
            )
    return items


def _shipped(name: str) -> list[Item]:
    folder = _resources().settings.eval_datasets_dir
    for suffix in (".jsonl", ".csv"):
        path = folder / f"{name}{suffix}"
        # The name is one id (no `/`, not `.` or `..`): it cannot leave the folder.
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
                return parse_dataset(text, name, csv_format=suffix == ".csv")
            except (OSError, UnicodeDecodeError, DatasetError) as exc:
                # The file's path stays in the log; the caller learns the set is unusable.
                raise InvalidRequest(
                    f"dataset: {name} cannot be read: {exc}"
                    if isinstance(exc, DatasetError)
                    else f"dataset: {name} cannot be read",
                    field="dataset",
                ) from exc
    raise NotFound(f"dataset: no data set named {name}", field="dataset")


def _evaluation(record: EvaluationRecord) -> dict[str, Any]:
    spec = record.spec
    return {
        "id": record.id,
        "status": record.status,
        "dataset": record.dataset,
        "ensembles": spec.get("ensembles", []),
        "scorer": spec.get("scorer", ""),
        "judge": spec.get("judge"),
        "total": record.total,
        "done": record.done,
        "spent_usd": record.spent_usd,
        "error": {"code": record.error_code} if record.error_code else None,
        "created_at": record.created_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
    }


def _detail(record: EvaluationRecord) -> dict[str, Any]:
    spec = record.spec
    return respond(
        schemas.EvaluationDetail(
            **_evaluation(record),
            tolerance=spec.get("tolerance", 0.0),
            concurrency=spec.get("concurrency", 1),
            max_cost_usd=spec.get("max_cost_usd"),
            seed=spec.get("seed", 0),
            questions=len(record.items or []),
            report=record.report,
        )
    )


async def _found(principal: Principal, evaluation_id: str) -> EvaluationRecord:
    checked_id(evaluation_id, "evaluation_id")
    owner = owner_of(principal)
    record = await _store().read(
        lambda connection: kept.get_evaluation(connection, owner, evaluation_id)
    )
    if record is None:
        raise NotFound("no such evaluation")
    return record


_CREATED = "$response.body#/id"
_NEXT = {
    "GetEvaluation": link("evals_get_evaluation", "Its state and report", evaluation_id=_CREATED),
    "EvaluationEvents": link("evals_events", "Its progress", evaluation_id=_CREATED),
    "CancelEvaluation": link("evals_cancel", "Stop it", evaluation_id=_CREATED),
    "ResumeEvaluation": link("evals_resume", "Go on after it stopped", evaluation_id=_CREATED),
    "EvaluationReport": link("evals_report", "Its report as a page", evaluation_id=_CREATED),
}
_PATH = {"evaluation_id": "An evaluation's id, as POST /admin/evals gave it"}


@evals.post("/admin/evals")
@requires("admin")
@documented(
    "Start an evaluation: the ensemble against each of its members alone, on a data set",
    tag="evaluations",
    description="It runs in the background; follow it at `/admin/evals/{id}/events`. At "
    "most EVAL_MAX_RUNNING of yours run at once (429 beyond).",
    body=NewEvaluation,
    replies={202: returns(schemas.Evaluation, "Started", links=_NEXT, Location="Where it is")},
    errors=(404, 429, 503),
)
async def start() -> tuple[dict[str, Any], int, dict[str, str]]:
    try:
        body = NewEvaluation.model_validate_json(await request.get_data(as_text=False) or b"{}")
    except ValidationError as exc:
        raise first_problem(exc) from exc
    dataset, items = _items(body)
    field = next(name for name in ("dataset", "rows", "jsonl") if getattr(body, name) is not None)
    asked = Asked(
        dataset=dataset,
        items=_within_limits(items[: body.limit], field),
        ensembles=tuple(body.ensembles),
        scorer=body.scorer,
        tolerance=body.tolerance,
        concurrency=body.concurrency,
        max_cost_usd=body.max_cost_usd,
        seed=body.seed,
        judge=body.judge,
    )
    record = await start_evaluation(_resources(), current_principal(), asked)
    answer = respond(schemas.Evaluation(**_evaluation(record)))
    return answer, 202, {"Location": f"/admin/evals/{record.id}"}


@evals.get("/admin/evals")
@requires("admin")
@documented(
    "Your evaluations, newest first",
    tag="evaluations",
    query=schemas.EvaluationListQuery,
    replies={200: returns(schemas.EvaluationList)},
    errors=(400, 404, 503),
)
async def list_evaluations() -> dict[str, Any]:
    query = read_query(schemas.EvaluationListQuery)
    owner = owner_of(current_principal())
    records = await _store().read(
        lambda connection: kept.list_evaluations(connection, owner, limit=query.limit)
    )
    return respond(
        schemas.EvaluationList(evaluations=[schemas.Evaluation(**_evaluation(r)) for r in records])
    )


@evals.get("/admin/evals/<evaluation_id>")
@requires("admin")
@documented(
    "One evaluation: what it was asked, how far it is, and its report once it has one",
    tag="evaluations",
    path=_PATH,
    replies={200: returns(schemas.EvaluationDetail)},
    errors=(400, 404, 503),
)
async def get_evaluation(evaluation_id: str) -> dict[str, Any]:
    return _detail(await _found(current_principal(), evaluation_id))


@evals.get("/admin/evals/<evaluation_id>/report.html")
@requires("admin")
@documented(
    "The evaluation's report as a page: the table and a plot of score against cost",
    tag="evaluations",
    path=_PATH,
    replies={200: raw("text/html", "The page (no script; its own style only)")},
    errors=(400, 404, 409, 503),
)
async def report(evaluation_id: str) -> Response:
    record = await _found(current_principal(), evaluation_id)
    if record.report is None:
        raise Conflict(f"the evaluation is {record.status} and has no report yet")
    return Response(
        html_page(record.report),
        status=200,
        content_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": REPORT_POLICY, "Cache-Control": "no-store"},
    )


@evals.get("/admin/evals/<evaluation_id>/events")
@requires("admin")
@documented(
    "An evaluation's progress: its newest state as it changes, then its end",
    tag="evaluations",
    path=_PATH,
    headers={
        "Last-Event-ID": (
            "The id of the last event you have (EventSource sends it)",
            {"type": "string", "pattern": LAST_EVENT_ID.pattern},
        )
    },
    replies={200: event_stream(schemas.EvaluationEvent, "`eval.progress`, then `eval.ended`")},
    errors=(400, 404, 503),
)
async def events(evaluation_id: str) -> Response:
    resources = _resources()
    principal = current_principal()
    after = _last_event_id()
    record = await _found(principal, evaluation_id)
    job = resources.jobs.get(principal, record.id)
    source: FrameSource = (
        job.progress
        if job is not None
        else _StoredProgress(_store(), owner_of(principal), record.id)
    )
    # Ends at the request's deadline: a client follows on with Last-Event-ID (EventSource
    # does by itself), and is given the newest state.
    until = trio.current_time() + resources.settings.request_timeout_s
    return await slot_holding_stream(resources, _Until(source, until), after)


@evals.post("/admin/evals/<evaluation_id>/cancel")
@requires("admin")
@documented(
    "Stop a running evaluation: it keeps a report of what it had done",
    tag="evaluations",
    path=_PATH,
    replies={200: returns(schemas.EvaluationDetail, "Cancelled")},
    errors=(400, 404, 409, 503),
)
async def cancel(evaluation_id: str) -> dict[str, Any]:
    checked_id(evaluation_id, "evaluation_id")
    record = await cancel_evaluation(_resources(), current_principal(), evaluation_id)
    if record is None:
        raise NotFound("no such evaluation")
    return _detail(record)


@evals.post("/admin/evals/<evaluation_id>/resume")
@requires("admin")
@documented(
    "Go on with an evaluation that stopped (interrupted, cancelled or failed) from the "
    "results it kept",
    tag="evaluations",
    path=_PATH,
    replies={202: returns(schemas.Evaluation, "Running again")},
    errors=(400, 404, 409, 429, 503),
)
async def resume(evaluation_id: str) -> tuple[dict[str, Any], int]:
    checked_id(evaluation_id, "evaluation_id")
    record = await resume_evaluation_job(_resources(), current_principal(), evaluation_id)
    if record is None:
        raise NotFound("no such evaluation")
    return respond(schemas.Evaluation(**_evaluation(record))), 202


@evals.delete("/admin/evals/<evaluation_id>")
@requires("admin")
@documented(
    "Delete an evaluation that is not running, with its results and report (409 while it "
    "runs: cancel it first)",
    tag="evaluations",
    path=_PATH,
    replies={204: empty("Deleted")},
    errors=(400, 404, 409, 503),
)
async def delete_evaluation(evaluation_id: str) -> Response:
    checked_id(evaluation_id, "evaluation_id")
    owner = owner_of(current_principal())
    deletion = await _store().write_once(
        lambda connection: kept.delete_evaluation(connection, owner, evaluation_id)
    )
    if deletion == "missing":
        raise NotFound("no such evaluation")
    if deletion == "running":
        raise Conflict("the evaluation is running: cancel it first")
    return no_content()


def _last_event_id() -> int:
    given = request.headers.get("Last-Event-ID")
    if not given:
        return 0
    if not LAST_EVENT_ID.match(given):
        raise InvalidRequest(
            "Last-Event-ID: must be a whole number, an event id", field="Last-Event-ID"
        )
    return int(given)


class _Until:
    """A frame source that ends at `deadline`."""

    def __init__(self, source: FrameSource, deadline: float) -> None:
        self._source = source
        self._deadline = deadline

    async def frames_after(self, after: int) -> Sequence[Part]:
        with trio.move_on_at(self._deadline):
            return await self._source.frames_after(after)
        return []


class _StoredProgress:
    """An evaluation not running here (done, stopped, or running on another instance), as
    its row says: its state, read again every POLL_S while it runs, then its end. Ids follow
    its results: `done + 1` for its state, `done + 2` for its end."""

    def __init__(self, store: Store, owner: Owner, evaluation_id: str) -> None:
        self._store = store
        self._owner = owner
        self._id = evaluation_id

    async def frames_after(self, after: int) -> Sequence[Part]:
        while True:
            record = await self._store.read(
                lambda connection: kept.get_evaluation(connection, self._owner, self._id)
            )
            if record is None:
                return []
            kind, number = (
                (PROGRESS, record.done + 1) if record.running else (ENDED, record.done + 2)
            )
            if number > after:
                return [(number, kind, json.dumps(_event(record, kind)))]
            if not record.running:
                return []
            await trio.sleep(POLL_S)


def _event(record: EvaluationRecord, kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "evaluation_id": record.id,
        "status": record.status,
        "phase": "asking",
        "done": record.done,
        "total": record.total,
        "spent_usd": record.spent_usd,
        "error": {"code": record.error_code} if record.error_code else None,
    }
