"""The store on SQLite and on the machine's PostgreSQL: the same behaviour on both."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, update

from service.auth import Principal
from service.storage import queries
from service.storage.database import Database
from service.storage.migrate import current_revision, head_revision, migrate
from service.storage.records import (
    AgentAnswer,
    ExistingMessage,
    MessageEnd,
    MessageStart,
    NewMessage,
    Owner,
    StoredEvent,
    UnknownMessage,
)
from service.storage.schema import instances, messages, metadata
from service.storage.store import Store

ALICE = Principal(user="alice")
BOB = Principal(user="bob")


async def begin(
    store: Store,
    principal: Principal = ALICE,
    message_id: str = "m-1",
    question: str = "Why is the sky blue?",
    conversation_id: str | None = None,
    history_max_chars: int = 24_000,
) -> NewMessage | ExistingMessage:
    return await store.begin_message(
        principal,
        MessageStart(
            message_id=message_id,
            conversation_id=conversation_id,
            question=question,
            ensemble="default",
            ensemble_version="v1",
            trace_id="0" * 32,
            history_max_chars=history_max_chars,
        ),
    )


async def regenerate(store: Store, message_id: str) -> NewMessage | ExistingMessage:
    return await store.begin_message(
        ALICE,
        MessageStart(
            message_id=message_id,
            conversation_id=None,
            question=None,
            ensemble="default",
            ensemble_version="v1",
            trace_id=None,
            history_max_chars=24_000,
            regenerate=True,
        ),
    )


def completed(summary: str) -> MessageEnd:
    return MessageEnd(
        status="completed",
        summary=summary,
        error_code=None,
        models={"a": "m"},
        usage={"a": {"prompt_tokens": 3, "completion_tokens": 4}},
        timings={"total_ms": 12.5},
    )


async def answered(store: Store, message_id: str, question: str, summary: str, **kw: str) -> str:
    begun = await begin(store, message_id=message_id, question=question, **kw)  # type: ignore[arg-type]
    assert isinstance(begun, NewMessage)
    assert await store.record(begun.pk, end=completed(summary))
    return begun.conversation_id


def test_migrations_build_the_declared_schema_and_a_rerun_changes_nothing(
    database: Database,
) -> None:
    assert current_revision(database.engine) == head_revision()
    assert migrate(database.engine) == head_revision()  # again: nothing to do
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []


async def test_a_new_message_starts_a_conversation_titled_by_its_question(store: Store) -> None:
    begun = await begin(store, question="Why is the sky blue?\nAnd the sea?")
    assert isinstance(begun, NewMessage)
    assert begun.conversation_id.startswith("c_")
    assert begun.history == ()
    (conversation,) = await store.conversations(ALICE, limit=10, before=None)
    assert conversation.id == begun.conversation_id
    assert conversation.title == "Why is the sky blue? And the sea?"


async def test_the_same_message_id_and_text_again_is_the_stored_message(store: Store) -> None:
    first = await begin(store)
    again = await begin(store)
    assert isinstance(first, NewMessage)
    assert isinstance(again, ExistingMessage)
    assert (again.pk, again.status, again.version) == (first.pk, "running", 1)


async def test_other_text_under_a_message_id_is_its_next_version_in_a_conversation_of_its_own(
    store: Store,
) -> None:
    """The original service's two curl examples send one id with two texts: both run."""
    first = await begin(store, message_id="message_123", question="Explain gravity")
    second = await begin(store, message_id="message_123", question="Build me a robot")
    assert isinstance(first, NewMessage)
    assert isinstance(second, NewMessage)
    assert (first.version, second.version) == (1, 2)
    assert second.conversation_id != first.conversation_id
    assert second.history == ()
    newest = await store.message(ALICE, "message_123")
    assert newest is not None
    assert (newest.version, newest.question) == (2, "Build me a robot")
    # The first stays in its own conversation's history.
    kept = await store.conversation(ALICE, first.conversation_id)
    assert kept is not None
    assert [(m.message_id, m.version, m.question) for m in kept[1]] == [
        ("message_123", 1, "Explain gravity")
    ]
    again = await begin(store, message_id="message_123", question="Build me a robot")
    assert isinstance(again, ExistingMessage)
    assert again.pk == second.pk


async def test_an_edit_branches_the_conversation_from_the_turn_it_replaces(store: Store) -> None:
    conversation = await answered(store, "m-1", "First?", "one")
    await answered(store, "m-2", "Second?", "two", conversation_id=conversation)
    await answered(store, "m-3", "Third?", "three", conversation_id=conversation)
    edit = await begin(
        store, message_id="m-2", question="Second, edited?", conversation_id=conversation
    )
    assert isinstance(edit, NewMessage)
    assert edit.version == 2
    assert [turn.question for turn in edit.history] == ["First?"]  # not m-2 or m-3
    assert await store.record(edit.pk, end=completed("two, edited"))
    follow_up = await begin(
        store, message_id="m-4", question="Fourth?", conversation_id=conversation
    )
    assert isinstance(follow_up, NewMessage)
    assert [turn.question for turn in follow_up.history] == ["First?", "Second, edited?"]
    found = await store.conversation(ALICE, conversation)
    assert found is not None
    shown = [(m.message_id, m.version, m.parent, m.current) for m in found[1]]
    assert shown == [
        ("m-1", 1, None, True),
        ("m-2", 1, ("m-1", 1), False),
        ("m-3", 1, ("m-2", 1), False),
        ("m-2", 2, ("m-1", 1), True),
        ("m-4", 1, ("m-2", 2), True),
    ]


async def test_a_regenerate_is_a_new_version_of_the_same_turn(store: Store) -> None:
    conversation = await answered(store, "m-1", "First?", "one")
    await answered(store, "m-2", "Second?", "two", conversation_id=conversation)
    again = await regenerate(store, "m-2")
    assert isinstance(again, NewMessage)
    assert (again.version, again.question, again.conversation_id) == (2, "Second?", conversation)
    assert [turn.question for turn in again.history] == ["First?"]
    with pytest.raises(UnknownMessage):
        await regenerate(store, "never-sent")


async def test_events_follow_the_newest_version_unless_one_is_named(store: Store) -> None:
    first = await begin(store, question="One?")
    second = await begin(store, question="Two?")
    assert isinstance(first, NewMessage)
    assert isinstance(second, NewMessage)
    assert await store.record(first.pk, events=[StoredEvent(1, "done", "{}")])
    assert await store.events_after(ALICE, "m-1", 0) == ("running", ())
    assert await store.events_after(ALICE, "m-1", 0, version=1) == (
        "running",
        (StoredEvent(1, "done", "{}"),),
    )
    assert await store.newest_version(ALICE, "m-1") == 2
    assert await store.newest_version(BOB, "m-1") is None


async def test_sending_a_message_again_leaves_the_conversations_as_they_were(
    store: Store,
) -> None:
    """A first message is inserted without a look first; when its id turns out taken, the
    conversation made for it goes again, and a follow-up sent again touches nothing."""
    first = await begin(store)
    assert isinstance(first, NewMessage)
    follow_up = await begin(store, message_id="m-2", conversation_id=first.conversation_id)
    assert isinstance(follow_up, NewMessage)
    before = await store.conversations(ALICE, limit=10, before=None)
    again = await begin(store)
    follow_up_again = await begin(store, message_id="m-2", conversation_id=first.conversation_id)
    after = await store.conversations(ALICE, limit=10, before=None)
    assert isinstance(again, ExistingMessage)
    assert isinstance(follow_up_again, ExistingMessage)
    assert again.conversation_id == first.conversation_id
    assert after == before  # no new conversation, and none moved up


async def test_message_and_conversation_ids_are_per_owner(store: Store) -> None:
    alices = await begin(store, ALICE, conversation_id="shared")
    bobs = await begin(store, BOB, conversation_id="shared")
    assert isinstance(alices, NewMessage)
    assert isinstance(bobs, NewMessage)
    assert alices.pk != bobs.pk
    assert await store.message(BOB, "m-1") is not None
    assert (await store.message(ALICE, "m-1")).question == "Why is the sky blue?"  # type: ignore[union-attr]
    assert await store.conversation(ALICE, "shared") is not None
    assert await store.events_after(BOB, "nope", 0) is None


async def test_a_follow_up_gets_the_completed_turns_oldest_first(store: Store) -> None:
    conversation = await answered(store, "m-1", "First?", "One.")
    await answered(store, "m-2", "Second?", "Two.", conversation_id=conversation)
    failed = await begin(store, message_id="m-3", question="Broken?", conversation_id=conversation)
    assert isinstance(failed, NewMessage)
    await store.record(
        failed.pk,
        end=MessageEnd("failed", None, "no_agent_succeeded", {}, {}, None),
    )
    follow_up = await begin(
        store, message_id="m-4", question="Third?", conversation_id=conversation
    )
    assert isinstance(follow_up, NewMessage)
    assert [(t.question, t.summary) for t in follow_up.history] == [
        ("First?", "One."),
        ("Second?", "Two."),
    ]


async def test_history_keeps_the_newest_turns_that_fit(store: Store) -> None:
    conversation = await answered(store, "m-1", "a" * 10, "b" * 10)
    await answered(store, "m-2", "c" * 10, "d" * 10, conversation_id=conversation)
    cut = await begin(
        store, message_id="m-3", question="?", conversation_id=conversation, history_max_chars=39
    )
    assert isinstance(cut, NewMessage)
    assert [t.question for t in cut.history] == ["c" * 10]
    exact = await begin(
        store, message_id="m-4", question="?", conversation_id=conversation, history_max_chars=40
    )
    assert isinstance(exact, NewMessage)
    assert [t.question for t in exact.history] == ["a" * 10, "c" * 10]


async def test_events_agents_and_the_end_are_stored_and_read_back(store: Store) -> None:
    begun = await begin(store)
    assert isinstance(begun, NewMessage)
    events = [StoredEvent(1, "agent.started", '{"x":1}'), StoredEvent(2, "agent.completed", "{}")]
    answer = AgentAnswer(
        "a", "m", "completed", "text", None, 2, 10.5, prompt_tokens=3, completion_tokens=4
    )
    assert await store.record(begun.pk, events=events, agents=[answer])
    assert await store.events_after(ALICE, "m-1", 0) == ("running", tuple(events))
    await store.record(begun.pk, events=[StoredEvent(3, "done", "{}")], end=completed("Blue."))
    status, after = await store.events_after(ALICE, "m-1", 2)  # type: ignore[misc]
    assert status == "completed"
    assert [e.event_id for e in after] == [3]
    detail = await store.message(ALICE, "m-1")
    assert detail is not None
    assert detail.summary == "Blue."
    assert detail.usage == {"a": {"prompt_tokens": 3, "completion_tokens": 4}}
    assert detail.agents[0].text == "text"
    assert (detail.agents[0].prompt_tokens, detail.agents[0].completion_tokens) == (3, 4)


async def test_an_interrupted_message_is_never_turned_back(store: Store) -> None:
    begun = await begin(store)
    assert isinstance(begun, NewMessage)
    assert await store.mark_interrupted(expiry=timedelta(seconds=30), starting=True) == 1
    await store.record(begun.pk, end=completed("late"))
    detail = await store.message(ALICE, "m-1")
    assert detail is not None
    assert (detail.status, detail.summary) == ("interrupted", None)


async def test_running_messages_of_a_gone_instance_become_interrupted(
    store: Store, database: Database
) -> None:
    ours = await begin(store, message_id="ours")
    other = Store(database, instance="other")
    alive = Store(database, instance="alive")
    theirs = await begin(other, message_id="theirs")
    living = await begin(alive, message_id="living")
    for s in (store, other, alive):
        await s.heartbeat()
    stale = datetime.now(UTC) - timedelta(minutes=5)
    await database.run(
        lambda c: c.execute(
            update(instances).where(instances.c.id == "other").values(heartbeat_at=stale)
        )
    )
    assert await store.mark_interrupted(expiry=timedelta(seconds=30), starting=False) == 1
    statuses = await database.run(
        lambda c: dict(c.execute(select(messages.c.message_id, messages.c.status)).all())
    )
    assert statuses == {"ours": "running", "theirs": "interrupted", "living": "running"}
    assert all(isinstance(m, NewMessage) for m in (ours, theirs, living))


async def test_conversations_page_newest_first_with_a_cursor(store: Store) -> None:
    for number in range(5):
        await answered(store, f"m-{number}", f"Q{number}?", "A.")
    bobs = await begin(store, BOB, message_id="bob-1", question="Bob's?")
    assert isinstance(bobs, NewMessage)
    first = await store.conversations(ALICE, limit=2, before=None)
    second = await store.conversations(ALICE, limit=2, before=(first[-1].updated_at, first[-1].id))
    third = await store.conversations(ALICE, limit=2, before=(second[-1].updated_at, second[-1].id))
    titles = [c.title for c in first + second + third]
    assert titles == ["Q4?", "Q3?", "Q2?", "Q1?", "Q0?"]
    assert [c.title for c in await store.conversations(BOB, limit=10, before=None)] == ["Bob's?"]


async def test_deleting_a_conversation_takes_its_messages_and_is_owner_scoped(
    store: Store,
) -> None:
    conversation = await answered(store, "m-1", "Q?", "A.")
    assert not await store.delete_conversation(BOB, conversation)
    assert await store.message(ALICE, "m-1") is not None
    assert await store.delete_conversation(ALICE, conversation)
    assert await store.message(ALICE, "m-1") is None
    assert await store.conversation(ALICE, conversation) is None
    assert not await store.delete_conversation(ALICE, conversation)


async def test_retention_deletes_conversations_untouched_since_the_cutoff(
    store: Store, database: Database
) -> None:
    old = await answered(store, "old", "Old?", "A.")
    await answered(store, "new", "New?", "A.")
    long_ago = datetime.now(UTC) - timedelta(days=40)
    await database.run(
        lambda c: c.execute(
            queries.conversations.update()
            .where(queries.conversations.c.id == old)
            .values(updated_at=long_ago)
        )
    )
    assert await store.delete_expired(older_than=datetime.now(UTC) - timedelta(days=30)) == 1
    assert await store.message(ALICE, "old") is None
    assert await store.message(ALICE, "new") is not None


def test_the_same_message_id_sent_at_once_is_run_once(database: Database) -> None:
    outcomes: list[object] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        with database.engine.begin() as connection:
            outcomes.append(
                queries.begin_message(
                    connection,
                    Owner(tenant="default", user="alice"),
                    MessageStart(
                        message_id="same",
                        conversation_id="c",
                        question="Q?",
                        ensemble="default",
                        ensemble_version="v1",
                        trace_id=None,
                        history_max_chars=100,
                    ),
                    instance="i",
                )
            )

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(o, NewMessage) for o in outcomes) == 1
    assert len(outcomes) == 8


@pytest.mark.parametrize("bad", ["mysql://x/y", "not a url", "postgresql://u@h/d"])
def test_an_unusable_database_url_is_refused(bad: str) -> None:
    from service.storage.database import DatabaseUrlError

    with pytest.raises(DatabaseUrlError):
        Database.connect(bad)


async def test_store_calls_run_in_threads_not_on_the_loop(store: Store) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    await store.database.run(lambda connection: seen.append(threading.get_ident()))
    assert len(seen) == 1
    assert seen[0] != loop_thread


async def test_the_same_user_name_in_two_tenants_owns_nothing_of_the_other(
    store: Store,
) -> None:
    acme = Principal(user="alice", tenant="acme")
    globex = Principal(user="alice", tenant="globex")
    begun = await begin(store, acme, conversation_id="c")
    assert isinstance(begun, NewMessage)
    assert await store.message(globex, "m-1") is None
    assert await store.conversation(globex, "c") is None
    assert await store.conversations(globex, limit=10, before=None) == []
    assert not await store.delete_conversation(globex, "c")
    assert await store.message(acme, "m-1") is not None


async def test_only_an_admin_names_another_user_and_only_in_its_tenant(store: Store) -> None:
    from service.storage.store import NotYours

    await begin(store, Principal(user="bob", tenant="acme"))
    admin = Principal(user="root", tenant="acme", role="admin")
    other_admin = Principal(user="root", tenant="globex", role="admin")
    assert await store.message(admin, "m-1", user="bob") is not None
    assert await store.message(other_admin, "m-1", user="bob") is None
    with pytest.raises(NotYours):
        await store.message(Principal(user="carol", tenant="acme"), "m-1", user="bob")
