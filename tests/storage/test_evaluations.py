"""Evaluations in the store, on SQLite and PostgreSQL: each belongs to the admin who
started it and no query reaches another owner's; its results are counted as they are kept,
and refused once it stopped; a stopped instance's evaluations turn `interrupted`, and a
resume takes up only one that stopped before it was done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from service.storage.database import Database
from service.storage.evaluations import (
    NewEvaluation,
    add_result,
    create_evaluation,
    delete_evaluation,
    evaluation_results,
    finish_evaluation,
    get_evaluation,
    list_evaluations,
    resume_evaluation,
)
from service.storage.records import Owner
from service.storage.schema import evaluation_results as results_table
from service.storage.schema import evaluations
from service.storage.store import Store

ALICE = Owner(tenant="acme", user="alice")
# Not alice: another user of her tenant, and a user of her name in another tenant.
OTHERS = (Owner(tenant="acme", user="bob"), Owner(tenant="globex", user="alice"))
NEW = NewEvaluation(
    dataset="upload",
    spec={"scorer": "exact"},
    items=[{"key": "q1", "question": "?", "answers": ["4"]}],
    total=3,
)


async def start(store: Store, owner: Owner = ALICE, max_running: int = 5) -> str:
    record = await store.write_once(
        lambda c: create_evaluation(c, owner, NEW, instance=store.instance, max_running=max_running)
    )
    assert record is not None
    return record.id


async def test_an_evaluation_and_its_results_are_its_owners_alone(store: Store) -> None:
    evaluation = await start(store)
    kept = await store.write_once(
        lambda c: add_result(c, ALICE, evaluation, "result", {"item": "q1"}, cost_usd=0.5)
    )
    assert kept
    for other in OTHERS:
        assert await store.read(lambda c, o=other: get_evaluation(c, o, evaluation)) is None
        assert await store.read(lambda c, o=other: list_evaluations(c, o, limit=10)) == []
        assert await store.read(lambda c, o=other: evaluation_results(c, o, evaluation)) == ([], [])
        assert not await store.write_once(
            lambda c, o=other: add_result(c, o, evaluation, "result", {}, cost_usd=9.0)
        )
        assert not await store.write_once(
            lambda c, o=other: finish_evaluation(c, o, evaluation, "cancelled")
        )
    record = await store.read(lambda c: get_evaluation(c, ALICE, evaluation))
    assert record is not None
    assert (record.status, record.done, record.spent_usd) == ("running", 1, 0.5)
    assert record.items == NEW.items
    assert [r.id for r in await store.read(lambda c: list_evaluations(c, ALICE, limit=10))] == [
        evaluation
    ]


async def test_results_and_verdicts_are_counted_and_refused_once_it_stopped(store: Store) -> None:
    evaluation = await start(store)
    for kind, cost in (("result", 0.25), ("verdict", 0.125), ("result", None)):
        assert await store.write_once(
            lambda c, k=kind, x=cost: add_result(c, ALICE, evaluation, k, {"k": k}, cost_usd=x)
        )
    assert await store.write_once(
        lambda c: finish_evaluation(c, ALICE, evaluation, "completed", report={"rows": []})
    )
    late = await store.write_once(
        lambda c: add_result(c, ALICE, evaluation, "result", {}, cost_usd=1.0)
    )
    record = await store.read(lambda c: get_evaluation(c, ALICE, evaluation))
    results, verdicts = await store.read(lambda c: evaluation_results(c, ALICE, evaluation))
    assert not late
    assert record is not None
    assert (record.status, record.done, record.spent_usd) == ("completed", 2, 0.375)
    assert record.report == {"rows": []}
    assert (results, verdicts) == ([{"k": "result"}, {"k": "result"}], [{"k": "verdict"}])


async def test_a_user_may_have_only_so_many_running(store: Store) -> None:
    first = await start(store, max_running=1)
    refused = await store.write_once(
        lambda c: create_evaluation(c, ALICE, NEW, instance="i", max_running=1)
    )
    assert refused is None
    assert await store.write_once(lambda c: finish_evaluation(c, ALICE, first, "cancelled"))
    assert await start(store, max_running=1)
    # Another user's running evaluations are not hers.
    assert await start(store, OTHERS[0], max_running=1)


async def test_a_stopped_instances_evaluations_are_interrupted_and_can_be_resumed(
    store: Store, database: Database
) -> None:
    ours = await start(store)
    other = Store(database, instance="other")
    theirs = await start(other)
    await store.heartbeat()
    # Starting again under the same name: this instance's own are left from before.
    assert await store.mark_evaluations_interrupted(expiry=timedelta(seconds=30), starting=True)
    status = await store.read(lambda c: get_evaluation(c, ALICE, ours))
    assert status is not None
    assert (status.status, status.error_code) == ("interrupted", "interrupted")
    theirs_now = await store.read(lambda c: get_evaluation(c, ALICE, theirs))
    assert theirs_now is not None
    assert theirs_now.status == "interrupted"  # "other" never beat: it is gone

    assert await store.write_once(lambda c: resume_evaluation(c, ALICE, ours, instance="new"))
    resumed = await store.read(lambda c: get_evaluation(c, ALICE, ours))
    assert resumed is not None
    assert (resumed.status, resumed.instance, resumed.error_code) == ("running", "new", None)
    # Running, then done: neither can be resumed; nor can another owner's.
    assert not await store.write_once(lambda c: resume_evaluation(c, ALICE, ours, instance="x"))
    assert await store.write_once(lambda c: finish_evaluation(c, ALICE, ours, "completed"))
    assert not await store.write_once(lambda c: resume_evaluation(c, ALICE, ours, instance="x"))
    assert not await store.write_once(
        lambda c: resume_evaluation(c, OTHERS[0], theirs, instance="x")
    )


async def kept_results(database: Database) -> int:
    return await database.run(
        lambda c: c.execute(select(func.count()).select_from(results_table)).scalar_one()
    )


async def test_only_its_owner_deletes_an_evaluation_and_only_once_it_stopped(
    store: Store, database: Database
) -> None:
    evaluation = await start(store)
    assert await store.write_once(
        lambda c: add_result(c, ALICE, evaluation, "result", {"item": "q1"}, cost_usd=0.5)
    )
    # Running: its job would go on writing results for an evaluation nobody can see.
    assert await store.write_once(lambda c: delete_evaluation(c, ALICE, evaluation)) == "running"
    assert await store.write_once(lambda c: finish_evaluation(c, ALICE, evaluation, "cancelled"))
    for other in OTHERS:
        assert (
            await store.write_once(lambda c, o=other: delete_evaluation(c, o, evaluation))
            == "missing"
        )
    assert await kept_results(database) == 1
    assert await store.write_once(lambda c: delete_evaluation(c, ALICE, evaluation)) == "deleted"
    assert await store.read(lambda c: get_evaluation(c, ALICE, evaluation)) is None
    assert await kept_results(database) == 0
    assert await store.write_once(lambda c: delete_evaluation(c, ALICE, evaluation)) == "missing"


async def test_retention_deletes_evaluations_that_ended_before_the_cutoff_only(
    store: Store, database: Database
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=40)
    old, recent, running = await start(store), await start(store), await start(store)
    for evaluation in (old, recent, running):
        assert await store.write_once(
            lambda c, e=evaluation: add_result(c, ALICE, e, "result", {}, cost_usd=None)
        )
    for ended in (old, recent):
        assert await store.write_once(
            lambda c, e=ended: finish_evaluation(c, ALICE, e, "completed")
        )
    await database.run(
        lambda c: (
            c.execute(
                update(evaluations).where(evaluations.c.id == old).values(finished_at=long_ago)
            ),
            # A running one is kept however old.
            c.execute(
                update(evaluations).where(evaluations.c.id == running).values(created_at=long_ago)
            ),
        )
    )

    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert await store.delete_expired_evaluations(older_than=cutoff) == 1
    left = await store.read(lambda c: list_evaluations(c, ALICE, limit=10))
    assert sorted(record.id for record in left) == sorted([recent, running])
    assert await kept_results(database) == 2  # the old one's result went with it
