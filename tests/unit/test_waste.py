"""Which calls count as wasted, and what they are reckoned at when the provider never said:
a call cancelled in flight (its prompt was sent), one that broke off after text arrived,
one whose answer was refused as empty; never a refusal before any text."""

from __future__ import annotations

import pytest
import trio

from service.errors import UpstreamRateLimited, UpstreamUnavailable
from service.llm import ChatMessage, ChatRequest, Usage
from service.pipeline.calls import Attempts
from service.pipeline.waste import WasteTally, reckoned, spending

REQUEST = ChatRequest(
    model="m",
    messages=(ChatMessage("system", "x" * 10), ChatMessage("user", "y" * 7)),
    caller="a",
)


def test_a_call_is_reckoned_a_token_per_four_characters_sent_and_per_piece_received() -> None:
    assert reckoned(REQUEST, 3) == Usage(prompt_tokens=5, completion_tokens=3)  # ceil(17 / 4)


def fail(
    attempts: Attempts, error: Exception, pieces: int = 0, reported: Usage | None = None
) -> None:
    """A call that raises `error` after `pieces` of text (and `reported` tokens)."""
    with spending(attempts, REQUEST) as call:
        call.pieces, call.reported = pieces, reported
        raise error


def test_a_refusal_before_any_text_costs_nothing() -> None:
    attempts = Attempts()
    with pytest.raises(UpstreamRateLimited):
        fail(attempts, UpstreamRateLimited("429"))
    assert attempts.wasted == {}


def test_a_call_broken_off_after_text_is_wasted_with_what_it_sent() -> None:
    attempts = Attempts()
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            fail(attempts, UpstreamUnavailable("cut"), pieces=2)
    assert attempts.wasted == {"m": (2, Usage(10, 4))}


def test_tokens_the_provider_reported_win_over_the_reckoning() -> None:
    attempts = Attempts()
    with pytest.raises(UpstreamUnavailable):
        fail(attempts, UpstreamUnavailable("empty"), reported=Usage(40, 0))
    assert attempts.wasted == {"m": (1, Usage(40, 0))}


async def test_a_call_cancelled_in_flight_is_wasted_and_an_answer_is_not() -> None:
    attempts = Attempts()
    with trio.move_on_after(0):
        with spending(attempts, REQUEST) as call:
            call.pieces += 1
            await trio.sleep_forever()
    with spending(attempts, REQUEST) as call:
        call.pieces += 9  # answered: used, not wasted
    assert attempts.wasted == {"m": (1, Usage(5, 1))}
    tally = WasteTally()
    tally.add("a", attempts)
    tally.add("a", attempts)
    assert tally.calls == {("a", "m"): (2, Usage(10, 2))}
