"""The calls a run pays for and does not use: a straggler cut, a hedge that lost, a call
that failed after the provider began to answer, an answer refused as empty. Their dollars
are shown apart (`done`'s `cost.wasted_usd`), inside the total.

    with spending(attempts, request) as call:
        async for piece in stream:
            call.pieces += 1          # what was received, should the call be cut
    tally.add(member, attempts)       # after the step
    done = Done(..., wasted=tally.priced(ensemble))

A call that ends without an answer is counted when it had cost something: it was cancelled
in flight (the prompt was sent), its socket was closed on this side (a client's hang-up
closes its request's upstream calls before the cancel reaches them: llm/pool.py), or it
failed after text had arrived. A refusal before any
text (a 429, a 500, a reset) costs nothing. Its tokens are the provider's when it reported
them; a cancelled stream never does, so they are reckoned: a token per four characters of
the prompt (the usual rule for English with OpenAI's tokenizers) and a token per piece of
text received (providers stream about a token per chunk).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trio

from ..ensemble import Ensemble
from ..ensemble.prices import run_cost
from ..errors import UpstreamError
from ..events import Wasted
from ..llm import ChatRequest, Usage
from ..telemetry.tracing import only_cancelled
from .calls import Attempts

CHARS_PER_TOKEN = 4


def reckoned(request: ChatRequest, pieces: int) -> Usage:
    """The tokens of a call cut before its provider reported them."""
    characters = sum(len(message.content) for message in request.messages)
    return Usage(prompt_tokens=math.ceil(characters / CHARS_PER_TOKEN), completion_tokens=pieces)


@dataclass
class Call:
    """What is known of one call while it runs: the pieces of text it sent, and the tokens
    its provider reported (None until then)."""

    pieces: int = 0
    reported: Usage | None = None


@contextmanager
def spending(attempts: Attempts, request: ChatRequest) -> Iterator[Call]:
    """Count the call as waste in `attempts` if it ends without an answer, having cost
    something (see the module's docstring)."""
    call = Call()
    try:
        yield call
    except BaseException as exc:
        began = call.pieces > 0 or call.reported is not None
        if only_cancelled(exc) or (isinstance(exc, UpstreamError) and (began or _closed_here(exc))):
            attempts.waste(request.model, call.reported or reckoned(request, call.pieces))
        raise


def _closed_here(exc: BaseException) -> bool:
    """The call broke because this side closed its socket (trio says ClosedResourceError
    only of a resource closed locally), not because the provider refused it."""
    seen: BaseException | None = exc
    chain: set[int] = set()
    while seen is not None and id(seen) not in chain:
        if isinstance(seen, trio.ClosedResourceError):
            return True
        chain.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass
class WasteTally:
    """A run's wasted calls so far, per member and model, over its every step."""

    calls: dict[tuple[str, str], tuple[int, Usage]] = field(default_factory=dict)

    def add(self, member: str, attempts: Attempts) -> None:
        for model, (calls, usage) in attempts.wasted.items():
            before_calls, before = self.calls.get((member, model), (0, Usage(0, 0)))
            self.calls[member, model] = (
                before_calls + calls,
                Usage(
                    before.prompt_tokens + usage.prompt_tokens,
                    before.completion_tokens + usage.completion_tokens,
                ),
            )

    def priced(self, ensemble: Ensemble, *, free: bool = False) -> tuple[Wasted, ...]:
        """Each member's wasted calls per model, with their dollars (ensemble/prices.py)."""
        return tuple(
            Wasted(
                member=member,
                model=model,
                calls=calls,
                usage=usage,
                cost_usd=run_cost(ensemble, {member: usage}, {member: model}, free=free).get(
                    member
                ),
            )
            for (member, model), (calls, usage) in self.calls.items()
        )
