"""Evaluations the server runs for an admin (`POST /admin/evals`): the same runner as
`llm-fanout eval`, as a background job in the server's nursery, its results kept in the
database under the admin who started it (store_book.py), its progress followed as events.

    record = await start_evaluation(resources, principal, asked)    # running, in the background
    await cancel_evaluation(resources, principal, record.id)        # keeps what it did
    await resume_evaluation_job(resources, principal, record.id)    # goes on from there

Each question asked is admitted through the caller's rate limits like a request (waiting
its turn when refused), and the calls keep each member's retries, fallbacks and timeouts. A
server that drains stops its jobs at once (`interrupted`; a crash leaves them for the next
start, or another instance, to mark so); a resume goes on from the results kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import trio

from ..ensemble import Member, UnknownEnsemble
from ..errors import (
    Conflict,
    EnsembleNotFound,
    InvalidRequest,
    LimiterUnavailable,
    RateLimited,
    ShuttingDown,
    StorageDisabled,
)
from ..limits import Limiter
from ..llm import calls_of_no_request
from ..principal import Principal
from ..resources import Resources
from ..runs.jobs import Job, Progress
from ..storage import StorageUnavailable, Store
from ..storage.evaluations import (
    EvaluationRecord,
    EvaluationStatus,
    NewEvaluation,
    create_evaluation,
    finish_evaluation,
    get_evaluation,
    resume_evaluation,
    running_count,
)
from ..storage.store import owner_of
from .book import EvaluationError
from .dataset import Item
from .judge import judge_pairs
from .report import build_report, with_judgements
from .runner import (
    Contestant,
    Outcome,
    Plan,
    Result,
    Ticket,
    contestants_of,
    evaluate,
    judge_of,
)
from .store_book import StoppedElsewhere, StoreBook

log = logging.getLogger(__name__)

PROGRESS = "eval.progress"
ENDED = "eval.ended"
# How long the end of a stopped job may take to be written (shielded).
FINISH_S = 5.0
# A question refused by a limiter that did not answer waits this long before it asks again.
LIMITER_WAIT_S = 1.0
# When the caller has EVAL_MAX_RUNNING running: when to try again (a guess; they end when
# they end).
RUNNING_RETRY_S = 10.0


@dataclass(frozen=True, slots=True)
class Asked:
    """An evaluation as an admin asks for it: its questions and how to run them."""

    dataset: str  # a shipped data set's name, or "upload"
    items: list[Item]
    ensembles: tuple[str, ...] = ()  # none: the default
    scorer: str = "includes"
    tolerance: float = 1e-6
    concurrency: int = 4
    max_cost_usd: float | None = None
    seed: int = 0
    judge: str | None = None

    def spec(self) -> dict[str, Any]:
        """What is stored beside the questions, for a resume to run the same."""
        return {
            "ensembles": list(self.ensembles),
            "scorer": self.scorer,
            "tolerance": self.tolerance,
            "concurrency": self.concurrency,
            "max_cost_usd": self.max_cost_usd,
            "seed": self.seed,
            "judge": self.judge,
        }

    @classmethod
    def stored(cls, record: EvaluationRecord) -> Asked:
        spec = record.spec
        return cls(
            dataset=record.dataset,
            items=[
                Item(key=row["key"], question=row["question"], answers=tuple(row["answers"]))
                for row in record.items or []
            ],
            ensembles=tuple(spec.get("ensembles", ())),
            scorer=spec["scorer"],
            tolerance=spec["tolerance"],
            concurrency=spec["concurrency"],
            max_cost_usd=spec.get("max_cost_usd"),
            seed=spec.get("seed", 0),
            judge=spec.get("judge"),
        )


def _store(resources: Resources) -> Store:
    if resources.store is None:
        raise StorageDisabled()
    return resources.store


def _contestants(resources: Resources, asked: Asked) -> tuple[list[Contestant], Member | None]:
    """The ensembles named (as loaded now) and their agents; the judge, if one is asked."""
    try:
        contestants = contestants_of(resources.ensembles.current, list(asked.ensembles))
    except UnknownEnsemble as exc:
        raise EnsembleNotFound(str(exc), field="ensembles") from exc
    judge = None
    if asked.judge is not None:
        judge = judge_of(contestants, asked.judge)
        if judge is None:
            members = ", ".join(m.name for m in contestants[0].ensemble.members)
            raise InvalidRequest(
                f"judge: {asked.judge!r} is no member of the first ensemble ({members})",
                field="judge",
            )
    return contestants, judge


async def start_evaluation(
    resources: Resources, principal: Principal, asked: Asked
) -> EvaluationRecord:
    """Store the evaluation and start it in the background; the record as stored. Refused
    (429) when the caller already has EVAL_MAX_RUNNING running."""
    store = _store(resources)
    if resources.runs is None or resources.lifecycle.draining:
        raise ShuttingDown()
    contestants, _ = _contestants(resources, asked)
    new = NewEvaluation(
        dataset=asked.dataset,
        spec=asked.spec(),
        items=[asdict(item) for item in asked.items],
        total=len(asked.items) * len(contestants),
    )
    owner = owner_of(principal)
    limit = resources.settings.eval_max_running
    record = await store.write_once(
        lambda connection: create_evaluation(
            connection, owner, new, instance=store.instance, max_running=limit
        )
    )
    if record is None:
        raise RateLimited("running_evaluations", RUNNING_RETRY_S)
    _launch(resources, principal, record)
    return record


async def resume_evaluation_job(
    resources: Resources, principal: Principal, evaluation_id: str
) -> EvaluationRecord | None:
    """Take up an evaluation that stopped before it was done, from the results it kept;
    None if the caller has none by this id, Conflict if it is running or done."""
    store = _store(resources)
    if resources.runs is None or resources.lifecycle.draining:
        raise ShuttingDown()
    owner = owner_of(principal)
    running = await store.read(lambda connection: running_count(connection, owner))
    if running >= resources.settings.eval_max_running:
        raise RateLimited("running_evaluations", RUNNING_RETRY_S)
    resumed = await store.write_once(
        lambda connection: resume_evaluation(
            connection, owner, evaluation_id, instance=store.instance
        )
    )
    record = await store.read(lambda connection: get_evaluation(connection, owner, evaluation_id))
    if record is None:
        return None
    if not resumed:
        raise Conflict(f"the evaluation is {record.status}: there is nothing to resume")
    _launch(resources, principal, record)
    return record


async def cancel_evaluation(
    resources: Resources, principal: Principal, evaluation_id: str
) -> EvaluationRecord | None:
    """Stop a running evaluation: its job here (which keeps a report of what it had done),
    or, running on another instance, its row, which that job finds at its next result.
    None if the caller has none by this id, Conflict if it is not running."""
    store = _store(resources)
    owner = owner_of(principal)
    record = await store.read(lambda connection: get_evaluation(connection, owner, evaluation_id))
    if record is None:
        return None
    if not record.running:
        raise Conflict(f"the evaluation is {record.status}: there is nothing to cancel")
    job = resources.jobs.get(principal, evaluation_id)
    if job is not None:
        job.stop()
        with trio.move_on_after(FINISH_S):
            await job.finished.wait()
    else:
        await store.write_once(
            lambda connection: finish_evaluation(connection, owner, evaluation_id, "cancelled")
        )
    return await store.read(lambda connection: get_evaluation(connection, owner, evaluation_id))


def _launch(resources: Resources, principal: Principal, record: EvaluationRecord) -> None:
    job = Job(Progress(PROGRESS))
    resources.jobs.add(principal, record.id, job)
    job.progress.update(_state(record.id, "running", record.done, record.total, record.spent_usd))
    assert resources.runs is not None
    resources.runs.start_soon(_run_job, resources, principal, record, job, name="evaluation")


def _state(
    evaluation_id: str,
    status: EvaluationStatus,
    done: int,
    total: int,
    spent_usd: float,
    phase: str = "asking",
    *,
    error: str | None = None,
) -> str:
    """An `eval.progress` frame's data (`eval.ended`'s, once the status is not running)."""
    return json.dumps(
        {
            "type": PROGRESS if status == "running" else ENDED,
            "evaluation_id": evaluation_id,
            "status": status,
            "phase": phase,
            "done": done,
            "total": total,
            "spent_usd": round(spent_usd, 8),
            "error": {"code": error} if error is not None else None,
        }
    )


async def _run_job(
    resources: Resources, principal: Principal, record: EvaluationRecord, job: Job
) -> None:
    # Started from a request's task: its upstream sockets are closed when that client
    # leaves, and this job's must not be.
    calls_of_no_request()
    store = _store(resources)
    owner = owner_of(principal)
    book = StoreBook(store, owner, record.id, key_id=principal.key_id or "")
    asked = Asked.stored(record)
    # Stopped by anything but what is caught below (the server's nursery cancelled): it
    # can be resumed.
    status: EvaluationStatus = "interrupted"
    error: str | None = "interrupted"
    report: dict[str, Any] | None = None
    plan: Plan | None = None
    resources.lifecycle.track_job(job.scope)
    try:
        with job.scope:
            contestants, judge = _contestants(resources, asked)
            plan = _plan(resources, principal, asked, contestants, book, job, record)
            outcome = await evaluate(plan, resources.model)
            # The bootstrap is seconds of CPU for thousands of results: not on the event loop.
            report = await trio.to_thread.run_sync(build_report, outcome, plan, asked.seed)
            if judge is not None and not outcome.stopped_by_budget:
                job.progress.update(
                    _state(
                        record.id, "running", record.total, record.total, book.spent_usd, "judging"
                    )
                )
                judging = await judge_pairs(
                    plan, resources.model, outcome.results, judge=judge, spent_usd=outcome.spent_usd
                )
                report = await trio.to_thread.run_sync(
                    with_judgements, report, judge.name, judging, asked.seed
                )
            status, error = "completed", None
        if job.scope.cancelled_caught and job.stopped_by_owner:
            status, error = "cancelled", None
            if plan is not None and book.results:  # what it had done, as its own report
                done = Outcome(results=book.results, spent_usd=book.spent_usd)
                with trio.CancelScope(shield=True), trio.move_on_after(FINISH_S):
                    report = await trio.to_thread.run_sync(build_report, done, plan, asked.seed)
    except Exception as exc:
        status, error = _why_it_ended(record.id, exc)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(FINISH_S):
            await store.write(
                f"the end of evaluation {record.id}",
                lambda connection: finish_evaluation(
                    connection, owner, record.id, status, report=report, error_code=error
                ),
            )
        ended = _state(
            record.id, status, len(book.results), record.total, book.spent_usd, error=error
        )
        job.progress.end(ENDED, ended)
        resources.jobs.remove(principal, record.id, job)
        resources.lifecycle.untrack_job(job.scope)
        job.finished.set()


def _why_it_ended(evaluation_id: str, exc: Exception) -> tuple[EvaluationStatus, str | None]:
    """The status and error an evaluation ends with after `exc` (raised by one task of the
    runner's nursery, in a group, or by the job itself)."""
    found = _leaves(exc)
    if any(isinstance(e, StoppedElsewhere) for e in found):
        return "cancelled", None  # already written by whoever cancelled it
    if any(isinstance(e, StorageUnavailable) for e in found):
        log.error("evaluation %s: the database did not answer", evaluation_id, exc_info=exc)
        return "failed", "storage_unavailable"
    if all(isinstance(e, EvaluationError | EnsembleNotFound | InvalidRequest) for e in found):
        log.warning("evaluation %s failed: %s", evaluation_id, exc)
        return "failed", "evaluation_failed"
    log.error("evaluation %s crashed", evaluation_id, exc_info=exc)
    return "failed", "internal_error"


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _plan(
    resources: Resources,
    principal: Principal,
    asked: Asked,
    contestants: list[Contestant],
    book: StoreBook,
    job: Job,
    record: EvaluationRecord,
) -> Plan:
    settings = resources.settings

    def on_result(result: Result, done: int, total: int) -> None:
        # What the book holds: what a resume, or another reader, would find.
        job.progress.update(_state(record.id, "running", len(book.results), total, book.spent_usd))

    return Plan(
        items=asked.items,
        contestants=contestants,
        scorer=asked.scorer,
        book=book,
        default_base_url=settings.llm_base_url,
        free=settings.use_llm_mock,
        tolerance=asked.tolerance,
        concurrency=asked.concurrency,
        max_cost_usd=asked.max_cost_usd,
        timeout_s=settings.request_timeout_s,
        on_result=on_result,
        admit=(
            _admitting(resources.limiter, principal, anonymous=resources.authenticator.anonymous)
            if resources.limiter is not None
            else None
        ),
    )


def _admitting(
    limiter: Limiter, principal: Principal, *, anonymous: bool
) -> Callable[[Contestant], AbstractAsyncContextManager[Ticket]]:
    """Each question admitted through the caller's limits as a request of its own (its rate,
    a stream slot, its tokens reserved), waiting its turn when refused, and settled with the
    tokens it used."""

    @asynccontextmanager
    async def admitted(contestant: Contestant) -> AsyncIterator[Ticket]:
        while True:
            try:
                admission = await limiter.admit(
                    principal, "evaluation", anonymous=anonymous, max_tokens=contestant.max_tokens()
                )
                break
            except RateLimited as refused:
                await trio.sleep(refused.retry_after)
            except LimiterUnavailable:
                await trio.sleep(LIMITER_WAIT_S)
        ticket = Ticket()
        try:
            yield ticket
        finally:
            with trio.CancelScope(shield=True):
                await admission.settle(ticket.used_tokens)

    return admitted
