"""Migrations on a database that already holds conversations. 0002 (message versions):
every row, answer and event stays, each message is version 1, and each follows the turn
before it in its conversation. 0003 (answers per step): every answer is its run's first
answer. 0004 (costs): tokens stored before have no dollars. On SQLite too, where the table
is copied to change a constraint or its key."""

from __future__ import annotations

from sqlalchemy import text

from service.storage import queries
from service.storage.database import Database
from service.storage.migrate import head_revision, migrate, upgrade_to
from service.storage.records import Phase, UsageLine

CONVERSATION_OF = {"a": "c1", "b": "c1", "c": "c2", "d": "c1"}


def test_messages_stored_before_versions_keep_their_answers_and_follow_each_other(
    url: str,
) -> None:
    database = Database.connect(url)
    try:
        upgrade_to(database.engine, "0001")
        with database.engine.begin() as connection:
            for conversation in ("c1", "c2"):
                connection.execute(
                    text(
                        "INSERT INTO conversations VALUES "
                        "('t', 'u', :id, 'x', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"id": conversation},
                )
            for message_id, conversation in CONVERSATION_OF.items():
                pk = connection.execute(
                    text(
                        "INSERT INTO messages (tenant, owner, message_id, conversation_id, "
                        "question, status, instance, created_at) VALUES ('t', 'u', :m, :c, "
                        "'q', 'completed', 'i', CURRENT_TIMESTAMP) RETURNING pk"
                    ),
                    {"m": message_id, "c": conversation},
                ).scalar_one()
                connection.execute(
                    text("INSERT INTO message_events VALUES (:pk, 1, '[]')"), {"pk": pk}
                )
                connection.execute(
                    text(
                        "INSERT INTO agent_answers (message_pk, agent, outcome, attempts) "
                        "VALUES (:pk, 'llm-1', 'completed', 1)"
                    ),
                    {"pk": pk},
                )

        assert migrate(database.engine) == head_revision()

        with database.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT pk, message_id, version, parent_pk FROM messages ORDER BY pk")
            ).all()
            events = connection.execute(text("SELECT count(*) FROM message_events")).scalar()
            answers = connection.execute(text("SELECT count(*) FROM agent_answers")).scalar()
    finally:
        database.close()
    pk_of = {row.message_id: row.pk for row in rows}
    assert [(row.message_id, row.version) for row in rows] == [(m, 1) for m in CONVERSATION_OF]
    assert {row.message_id: row.parent_pk for row in rows} == {
        "a": None,
        "b": pk_of["a"],
        "c": None,
        "d": pk_of["b"],
    }
    assert (events, answers) == (4, 4)


def test_answers_stored_before_steps_are_each_runs_first_answers_and_a_second_round_fits(
    url: str,
) -> None:
    database = Database.connect(url)
    try:
        upgrade_to(database.engine, "0002")
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO conversations VALUES "
                    "('t', 'u', 'c1', 'x', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            pk = connection.execute(
                text(
                    "INSERT INTO messages (tenant, owner, message_id, conversation_id, "
                    "question, status, instance, created_at) VALUES ('t', 'u', 'm', 'c1', "
                    "'q', 'completed', 'i', CURRENT_TIMESTAMP) RETURNING pk"
                )
            ).scalar_one()
            for agent in ("llm-1", "llm-2"):
                connection.execute(
                    text(
                        "INSERT INTO agent_answers (message_pk, agent, outcome, text, attempts) "
                        "VALUES (:pk, :agent, 'completed', 'an answer', 1)"
                    ),
                    {"pk": pk, "agent": agent},
                )

        assert migrate(database.engine) == head_revision()

        with database.engine.begin() as connection:
            # The same agent answers again in a later round of the same run.
            connection.execute(
                text(
                    "INSERT INTO agent_answers (message_pk, phase, round, agent, outcome, "
                    "attempts) VALUES (:pk, 'debate', 1, 'llm-1', 'completed', 1)"
                ),
                {"pk": pk},
            )
            rows = connection.execute(
                text(
                    "SELECT agent, phase, round, text FROM agent_answers "
                    "ORDER BY round, phase, agent"
                )
            ).all()
    finally:
        database.close()
    assert [tuple(row) for row in rows] == [
        ("llm-1", "answer", 0, "an answer"),
        ("llm-2", "answer", 0, "an answer"),
        ("llm-1", "debate", 1, None),
    ]


def test_tokens_stored_before_costs_keep_their_counts_and_have_no_dollars(url: str) -> None:
    """0004: a ledger line from before has no dollars (its prices were never asked), and
    a priced run added to it later leaves it so: a part is never shown as the whole."""
    database = Database.connect(url)
    try:
        upgrade_to(database.engine, "0003")
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    'INSERT INTO usage (tenant, "user", key_id, model, day, calls, '
                    "prompt_tokens, completion_tokens) VALUES ('t', 'u', '', 'm', "
                    "'2026-12-01', 2, 30, 40)"
                )
            )

        assert migrate(database.engine) == head_revision()

        with database.engine.begin() as connection:
            queries.record_phases(
                connection,
                [Phase(1, usage=[UsageLine("t", "u", "", "m", "2026-12-01", 1, 1, 1, 0.5)])],
            )
            (line,) = queries.usage_report(connection, "t", user=None, since=None, until=None)
    finally:
        database.close()
    assert (line["calls"], line["prompt_tokens"], line["cost_usd"]) == (3, 31, None)
