"""Dollars where tokens are kept, on SQLite and PostgreSQL: a finished message's cost and
each stored answer's, and the usage ledger's dollars, added up line by line, and unknown
(null) for good once one call of a line had no known price."""

from __future__ import annotations

from service.auth import Principal
from service.storage.records import AgentAnswer, MessageEnd, NewMessage, UsageLine
from service.storage.store import Store
from tests.storage.test_store import begin

ALICE = Principal(user="alice", tenant="acme")
COST = {"total_usd": 0.0035, "members": {"a": 0.001, "sum": 0.002}, "wasted_usd": 0.0005}


def spent(model: str, calls: int, cost: float | None, day: str = "2026-12-01") -> UsageLine:
    return UsageLine("acme", "alice", "", model, day, calls, 100 * calls, 10 * calls, cost)


async def test_a_finished_message_keeps_its_cost_and_each_answer_its_own(store: Store) -> None:
    begun = await begin(store, ALICE)
    assert isinstance(begun, NewMessage)
    answer = AgentAnswer("a", "m", "completed", "x", None, 1, 5.0, 3, 4, cost_usd=0.001)
    end = MessageEnd("completed", "Blue.", None, {"a": "m"}, {}, None, cost=COST)
    assert await store.record(begun.pk, agents=[answer], end=end)
    detail = await store.message(ALICE, "m-1")
    assert detail is not None
    assert detail.cost == COST
    assert detail.agents[0].cost_usd == 0.001


async def test_the_ledger_adds_dollars_and_an_unknown_price_makes_the_line_unknown(
    store: Store,
) -> None:
    begun = await begin(store, ALICE)
    assert isinstance(begun, NewMessage)
    await store.record(begun.pk, usage=[spent("priced", 1, 0.25), spent("unpriced", 1, 0.5)])
    await store.record(begun.pk, usage=[spent("priced", 2, 0.125), spent("unpriced", 1, None)])
    await store.record(begun.pk, usage=[spent("unpriced", 1, 0.5)])  # unknown stays unknown
    await store.record(begun.pk, usage=[spent("priced", 1, 1.0, day="2026-12-02")])
    report = await store.usage(ALICE, user=None, since=None, until=None)
    assert [(r["day"], r["model"], r["calls"], r["cost_usd"]) for r in report] == [
        ("2026-12-01", "priced", 3, 0.375),
        ("2026-12-01", "unpriced", 3, None),
        ("2026-12-02", "priced", 1, 1.0),
    ]


async def test_a_line_summed_over_keys_is_unknown_if_one_keys_line_is(store: Store) -> None:
    """The report adds a user's keys together: SUM would skip the unknown line and show a
    part of the dollars as the whole."""
    begun = await begin(store, ALICE)
    assert isinstance(begun, NewMessage)
    known = UsageLine("acme", "alice", "key-1", "m", "2026-12-01", 1, 1, 1, 0.5)
    unknown = UsageLine("acme", "alice", "key-2", "m", "2026-12-01", 1, 1, 1, None)
    await store.record(begun.pk, usage=[known, unknown])
    (line,) = await store.usage(ALICE, user=None, since=None, until=None)
    assert (line["calls"], line["cost_usd"]) == (2, None)
