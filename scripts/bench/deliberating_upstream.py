"""The fake upstream (tests/fake_upstream.py) as scenario 12 runs it, in a process of its
own: models whose replies suit every deliberation strategy, and its call records counted,
so that a scenario can check the upstream calls a request made against the ensemble's
`calls_per_request`:

    python -m scripts.bench.deliberating_upstream [--port 0]   # prints "fake upstream on http://..."
    GET /calls  ->  {"calls": 1234, "open": 0, "models": {"bench-answer": 900, ...}}

`bench-answer` (the agents) answers "A short answer.", and a council's review (its prompt
asks for a "FINAL RANKING:") with a ranking that names both answers a reviewer is shown;
`bench-judge` (the summarizer) streams 20 tokens, and answers a selection (universal
self-consistency) with "The most consistent response is Response 1".
"""

from __future__ import annotations

import argparse
import collections
import json
from functools import partial

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from tests.fake_upstream import Behaviour, FakeUpstream, serve_fake_upstream

ANSWER = "A short answer."
# Three agents: each reviewer is shown the two others' answers as Response A and B.
RANKING = "Both answer the question.\n\nFINAL RANKING:\n1. Response A\n2. Response B"
SELECTION = "The most consistent response is Response 1"
SUMMARY_TOKENS = tuple(f"t{i} " for i in range(20))

BEHAVIOURS = {
    "bench-answer": Behaviour(
        reply=ANSWER, on_prompt=(("FINAL RANKING", Behaviour(reply=RANKING)),)
    ),
    "bench-judge": Behaviour(
        tokens=SUMMARY_TOKENS,
        on_prompt=(("most consistent response", Behaviour(reply=SELECTION)),),
    ),
}


class CountedUpstream(FakeUpstream):
    """The fake, and `GET /calls`: how many chat calls it recorded, by model."""

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or scope["path"] != "/calls":
            await super().__call__(scope, receive, send)
            return
        counts = {
            "calls": len(self.calls),
            "open": len(self.open_calls()),
            "models": dict(collections.Counter(call.model for call in self.calls)),
        }
        body = json.dumps(counts).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def serve(port: int) -> None:
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(serve_fake_upstream, CountedUpstream(BEHAVIOURS), port=port)
        )
        print(f"fake upstream on {binds[0]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.deliberating_upstream")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    trio.run(serve, parser.parse_args().port)


if __name__ == "__main__":
    main()
