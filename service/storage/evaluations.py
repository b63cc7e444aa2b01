"""Evaluations the server runs, and the results each keeps: small functions of a connection
and the owner, as queries.py's are. An evaluation belongs to the admin who started it; no
query reads or changes another owner's.

    record = create_evaluation(connection, owner, NewEvaluation(...), instance="host:8080",
                               max_running=2)            # None: too many running already
    add_result(connection, owner, record.id, "result", {...}, cost_usd=0.002)
    results, verdicts = evaluation_results(connection, owner, record.id)
    delete_evaluation(connection, owner, record.id)      # "deleted", "running" or "missing"
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Connection, delete, func, insert, select, update

from .queries import add_usage, as_utc, interrupt_orphans, now
from .records import Owner, UsageLine
from .schema import evaluation_results as results_table
from .schema import evaluations

EvaluationStatus = Literal["running", "completed", "failed", "cancelled", "interrupted"]
ResultKind = Literal["result", "verdict"]
# What a resume may take up again: anything that stopped before it was done.
RESUMABLE = ("interrupted", "cancelled", "failed")
# What deleting one did: deleted it; nothing, it is running (cancel it first); nothing, the
# owner has none by that id.
Deletion = Literal["deleted", "running", "missing"]


@dataclass(frozen=True, slots=True)
class NewEvaluation:
    """What an evaluation is asked to do: the data set's name ("upload" for one sent), what
    was asked (`spec`), its questions, and how many results it will have."""

    dataset: str
    spec: dict[str, Any]
    items: list[dict[str, Any]]
    total: int


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    id: str
    status: EvaluationStatus
    dataset: str
    spec: dict[str, Any]
    total: int
    done: int
    spent_usd: float
    error_code: str | None
    instance: str
    created_at: datetime
    finished_at: datetime | None
    # Only when asked for one evaluation: its questions, and its report once it has one.
    items: list[dict[str, Any]] | None = None
    report: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"


def new_evaluation_id() -> str:
    return "ev_" + secrets.token_urlsafe(12)


def _of(owner: Owner) -> tuple[Any, Any]:
    return evaluations.c.tenant == owner.tenant, evaluations.c.owner == owner.user


def _record(row: Any, *, whole: bool = False) -> EvaluationRecord:
    return EvaluationRecord(
        id=row.id,
        status=cast(EvaluationStatus, row.status),
        dataset=row.dataset,
        spec=row.spec,
        total=row.total,
        done=row.done,
        spent_usd=round(float(row.spent_usd), 8),
        error_code=row.error_code,
        instance=row.instance,
        created_at=as_utc(row.created_at),
        finished_at=as_utc(row.finished_at) if row.finished_at is not None else None,
        items=row.items if whole else None,
        report=row.report if whole else None,
    )


_SUMMARY = [c for c in evaluations.c if c.name not in ("items", "report")]


def running_count(connection: Connection, owner: Owner) -> int:
    return int(
        connection.execute(
            select(func.count()).where(*_of(owner), evaluations.c.status == "running")
        ).scalar_one()
    )


def create_evaluation(
    connection: Connection, owner: Owner, new: NewEvaluation, *, instance: str, max_running: int
) -> EvaluationRecord | None:
    """Store a new evaluation, `running` on `instance`; None when the owner already has
    `max_running` running."""
    if running_count(connection, owner) >= max_running:
        return None
    evaluation_id = new_evaluation_id()
    connection.execute(
        insert(evaluations).values(
            tenant=owner.tenant,
            owner=owner.user,
            id=evaluation_id,
            status="running",
            dataset=new.dataset,
            spec=new.spec,
            items=new.items,
            total=new.total,
            done=0,
            spent_usd=0.0,
            instance=instance,
            created_at=now(),
        )
    )
    found = get_evaluation(connection, owner, evaluation_id)
    assert found is not None
    return found


def list_evaluations(connection: Connection, owner: Owner, *, limit: int) -> list[EvaluationRecord]:
    """The owner's evaluations, newest first (without their questions and reports)."""
    rows = connection.execute(
        select(*_SUMMARY)
        .where(*_of(owner))
        .order_by(evaluations.c.created_at.desc(), evaluations.c.id.desc())
        .limit(limit)
    )
    return [_record(row) for row in rows]


def get_evaluation(
    connection: Connection, owner: Owner, evaluation_id: str
) -> EvaluationRecord | None:
    row = connection.execute(
        select(evaluations).where(*_of(owner), evaluations.c.id == evaluation_id)
    ).first()
    return _record(row, whole=True) if row is not None else None


def add_result(
    connection: Connection,
    owner: Owner,
    evaluation_id: str,
    kind: ResultKind,
    data: dict[str, Any],
    *,
    cost_usd: float | None,
    usage: Sequence[UsageLine] = (),
) -> bool:
    """Keep one result of a running evaluation, count it, and add what its calls used to
    the usage ledger (`usage`); False (nothing kept) when the evaluation is no longer
    running (it was cancelled, maybe from another instance)."""
    counted = connection.execute(
        update(evaluations)
        .where(*_of(owner), evaluations.c.id == evaluation_id, evaluations.c.status == "running")
        .values(
            done=evaluations.c.done + (1 if kind == "result" else 0),
            spent_usd=evaluations.c.spent_usd + (cost_usd or 0.0),
        )
    ).rowcount
    if not counted:
        return False
    connection.execute(
        insert(results_table).values(
            tenant=owner.tenant, owner=owner.user, evaluation_id=evaluation_id, kind=kind, data=data
        )
    )
    add_usage(connection, usage)
    return True


def evaluation_results(
    connection: Connection, owner: Owner, evaluation_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The results and the verdicts the owner's evaluation has kept, in the order they came."""
    rows = connection.execute(
        select(results_table.c.kind, results_table.c.data)
        .where(
            results_table.c.tenant == owner.tenant,
            results_table.c.owner == owner.user,
            results_table.c.evaluation_id == evaluation_id,
        )
        .order_by(results_table.c.pk)
    )
    results: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    for row in rows:
        (results if row.kind == "result" else verdicts).append(row.data)
    return results, verdicts


def finish_evaluation(
    connection: Connection,
    owner: Owner,
    evaluation_id: str,
    status: EvaluationStatus,
    *,
    report: dict[str, Any] | None = None,
    error_code: str | None = None,
) -> bool:
    """End a running evaluation; False if it was not running (cancelled meanwhile: a
    cancel is never turned back)."""
    values: dict[str, Any] = {"status": status, "error_code": error_code, "finished_at": now()}
    if report is not None:
        values["report"] = report
    return bool(
        connection.execute(
            update(evaluations)
            .where(
                *_of(owner), evaluations.c.id == evaluation_id, evaluations.c.status == "running"
            )
            .values(**values)
        ).rowcount
    )


def resume_evaluation(
    connection: Connection, owner: Owner, evaluation_id: str, *, instance: str
) -> bool:
    """Run an evaluation that stopped before it was done again, on `instance`; False if the
    owner has none by this id that can be (running, or done)."""
    return bool(
        connection.execute(
            update(evaluations)
            .where(
                *_of(owner),
                evaluations.c.id == evaluation_id,
                evaluations.c.status.in_(RESUMABLE),
            )
            .values(status="running", instance=instance, error_code=None, finished_at=None)
        ).rowcount
    )


def delete_evaluation(connection: Connection, owner: Owner, evaluation_id: str) -> Deletion:
    """Delete the owner's evaluation with its results, unless it is running: its job would
    go on writing results (and spending) for an evaluation nobody can see."""
    stopped = select(evaluations.c.id).where(
        *_of(owner), evaluations.c.id == evaluation_id, evaluations.c.status != "running"
    )
    # Explicit, not by cascade alone, as queries.py deletes a conversation's messages.
    connection.execute(
        delete(results_table).where(
            results_table.c.tenant == owner.tenant,
            results_table.c.owner == owner.user,
            results_table.c.evaluation_id.in_(stopped),
        )
    )
    deleted = connection.execute(
        delete(evaluations).where(
            *_of(owner), evaluations.c.id == evaluation_id, evaluations.c.status != "running"
        )
    ).rowcount
    if deleted:
        return "deleted"
    return "running" if get_evaluation(connection, owner, evaluation_id) else "missing"


# --- housekeeping: not a client's data, so no owner -------------------------------------


def delete_expired_evaluations(connection: Connection, *, older_than: datetime) -> int:
    """Evaluations that ended before `older_than` (RETENTION_DAYS), with their results; a
    running one is kept however old. Returns how many."""
    old = select(evaluations.c.tenant, evaluations.c.owner, evaluations.c.id).where(
        evaluations.c.status != "running", evaluations.c.finished_at < older_than
    )
    deleted = 0
    for tenant, user, evaluation_id in list(connection.execute(old)):
        owner = Owner(tenant=tenant, user=user)
        deleted += delete_evaluation(connection, owner, evaluation_id) == "deleted"
    return deleted


def mark_evaluations_interrupted(
    connection: Connection, *, this_instance: str, expiry: timedelta, starting: bool
) -> int:
    """Evaluations left `running` by an instance that is gone (as queries.mark_interrupted
    does for messages) become `interrupted`: a resume takes them up. Returns how many."""
    return interrupt_orphans(
        connection, evaluations, this_instance=this_instance, expiry=expiry, starting=starting
    )
