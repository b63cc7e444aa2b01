"""A deterministic, cancellable stand-in for a language model (USE_LLM_MOCK=true).

Its text depends only on the caller and the prompt, so a test can predict it. An agent's
answer opens with a sentence that names the agent; a summarizer's prompt that labels answers
as `<answer from="NAME">...</answer>` gets back the opening sentence of each, so anyone can
see that the summary was built from every answer. Like a real model it stops after the
request's `max_tokens` tokens (one word-sized piece each), with finish reason `length`:

    model = MockChatModel(first_token_delay_s=0.25, token_delay_s=0.025)
    completion = await model.complete(request)

A model name `mock:FAULT` makes the mock misbehave the way real providers do, so the service's
retries, fallbacks and partial results can be seen by hand (set it in the ensemble file):

    stall          never answers (the agent's timeout ends it)
    slow           answers, but twenty times later than usual
    rate_limited   429 with Retry-After: 1 s, every time
    unavailable    a 5xx, every time
    flaky          a 5xx on every other call: a retry succeeds
    bad_response   an answer that cannot be used
    auth_failed    the key is refused
    cut            a stream that breaks after three tokens
    wrong          answers 30% of the questions below wrong (arithmetic off by one, a
                   fact with another of its kind), each caller on other questions

It answers arithmetic ("What is 17 + 25?": "The answer is 42."), word problems the way
children learn to read them ("How many ...?" with two numbers and a cue: "more" or
"altogether" adds, "left" or "fewer" subtracts, "each" multiplies, "shared equally"
divides), and the facts of mock_facts.py ("What is the capital of Norway?": "The answer is
Oslo."), which makes an offline evaluation (`make eval`) score something real.

It also plays its part in every deliberation strategy, as their default prompts ask:
a council's reviewer ends with a FINAL RANKING it can read (the same order from every
reviewer), a selector names a response, and a debate's revision or a mixture's layer
answers differently from the step before. As an evaluation's judge it prefers the same one
of two answers in either order (a tie when they are the same).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from ..errors import (
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from .mock_facts import fact_answer
from .model import ChatRequest, Completion, CompletionStream, FinishReason, Usage

FAULT_PREFIX = "mock:"
_FAILURES: dict[str, Callable[[], UpstreamError]] = {
    "rate_limited": lambda: UpstreamRateLimited(retry_after_s=1.0),
    "unavailable": UpstreamUnavailable,
    "flaky": UpstreamUnavailable,
    "bad_response": UpstreamBadResponse,
    "auth_failed": UpstreamAuthFailed,
    "cut": UpstreamUnavailable,
}
MOCK_FAULTS = frozenset({*_FAILURES, "stall", "slow", "wrong"})
# `mock:wrong` gets this share of the questions it can answer wrong (which ones depends on
# the caller and the question, so agents are wrong on different questions and a vote helps).
WRONG_SHARE = 0.3
SLOW_FACTOR = 20
CUT_AFTER_TOKENS = 3


class MockFault(Exception):
    """The cause a mock failure carries, as a provider's own error would (seen in logs only)."""


def mock_fault(model: str) -> str | None:
    """The fault a `mock:FAULT` model name asks for, or None for a model that behaves."""
    return model.removeprefix(FAULT_PREFIX) if model.startswith(FAULT_PREFIX) else None


_ANSWER = re.compile(r'<answer from="([^"]+)">\s*(.*?)\s*</answer>', re.DOTALL)
_TOKEN = re.compile(r"\s*\S+|\s+")
_REVIEW = re.compile(r'<review from="([^"]+)">')
_JUDGED = re.compile(r"<answer_a>\n(.*?)\n</answer_a>\s*<answer_b>\n(.*?)\n</answer_b>", re.S)
_LABELLED = re.compile(
    r"^(Response [A-Z]+):\n(.*?)(?=\n\nResponse [A-Z]+:|\n\nEvaluate)", re.M | re.S
)
_NUMBERED = re.compile(r"^Response (\d+): (.*?)$", re.M)
_REVISING = re.compile(r"Your answer so far:\s*<answer>\s*(.*?)\s*</answer>", re.S)
_ROUND = re.compile(r"\(round (\d+) of \d+\)")
_LISTED = re.compile(r"^\d+\. (.*)$", re.M)
_OPENINGS = (
    "Think of {topic} as a story that starts small and keeps growing.",
    "Picture {topic} as a ball rolling down a gentle hill.",
    "At its core, {topic} comes down to a few clear steps.",
    "The short version: {topic} follows rules anyone can check.",
    "Imagine {topic} as a river that always finds the lowest path.",
    "Start with the facts: {topic} has been measured many times.",
)
_DETAILS = (
    "Each part pulls on the next, and the whole thing moves together.",
    "Small causes add up, so the effect is easy to see once you look.",
    "Scientists test this again and again, and the results agree.",
    "A simple example makes it clear: drop something and watch it fall.",
    "The same idea shows up in many places once you know to look for it.",
    "It helps to go one step at a time and check each step.",
)


def _first_sentence(text: str) -> str:
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _strategy_reply(request: ChatRequest, prompt: str) -> str | None:
    """The mock's part in a deliberation's later steps, as their default prompts ask it
    (docs/ensemble.md): a ranking a council can read, a selector's choice, a revision or a
    synthesis that differs from the answer before. None for any other prompt."""
    judged = _JUDGED.search(prompt)
    if judged:
        # The same answer wins in either order, as a judge without position bias would.
        first, second = judged.groups()
        if first.strip() == second.strip():
            return "TIE"
        return "A" if _digest(first) < _digest(second) else "B"
    shown = dict(_LABELLED.findall(prompt))
    if "FINAL RANKING:" in prompt and shown and "<answer from=" not in prompt:
        # Ranked by the answers' text alone, so every reviewer agrees: a council converges.
        order = sorted(shown, key=lambda label: _digest(shown[label]))
        lines = "\n".join(f"{place}. {label}" for place, label in enumerate(order, start=1))
        return f"({request.caller}) {order[0]} is the clearest.\n\nFINAL RANKING:\n{lines}"
    if "most consistent response" in prompt:
        numbered = dict(_NUMBERED.findall(prompt))
        pick = min(numbered, key=lambda n: _digest(numbered[n])) if numbered else "1"
        return f"The most consistent response is Response {pick}: it agrees with the others."
    revising = _REVISING.search(prompt)
    if revising:
        own = _first_sentence(" ".join(revising.group(1).split()))
        others = len(_ANSWER.findall(prompt))
        round_number = _ROUND.search(prompt)
        where = f"round {round_number.group(1)}" if round_number else "a new round"
        return f"({request.caller}, {where}) Having read {others} other answer(s): {own}"
    if "Synthesize" in prompt and "Responses:" in prompt:
        count = len(_LISTED.findall(prompt))
        first = _LISTED.search(prompt)
        opening = _first_sentence(first.group(1)) if first else ""
        return f"({request.caller}) A synthesis of {count} responses. {opening}"
    return None


# A number starts where no digit is before it, and takes every digit at once: a search of a
# long run of digits is linear, not quadratic (it held the event loop for a minute on a
# question of 32,000 digits).
_ARITHMETIC = re.compile(r"(?<!\d)(-?\d++)\s*+([-+*×x])\s*+(-?\d++)")
# Numbers longer than this are not worked out (Python refuses to print a product of two
# numbers of 4,300 digits, and they are no arithmetic question).
_MAX_DIGITS = 18
_OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "×": lambda a, b: a * b,
    "x": lambda a, b: a * b,
}


# An arithmetic word problem ("How many ...?"), read as children learn to: its two numbers,
# and the operation its cue words name (the first cue found wins).
_CUES = (
    (re.compile(r"\bshared equally\b"), "/"),
    (re.compile(r"\beach\b"), "*"),
    (re.compile(r"\b(?:left|fewer)\b"), "-"),
    (re.compile(r"\b(?:more|altogether)\b"), "+"),
)
_NUMBER = re.compile(r"(?<!\d)\d++")


def _worked_out(prompt: str) -> int | None:
    """The value of the first `A op B` of a question, or of a word problem."""
    match = _ARITHMETIC.search(prompt)
    if match is not None:
        first, operation, second = match.groups()
        if max(len(first), len(second)) > _MAX_DIGITS:
            return None
        return _OPERATIONS[operation](int(first), int(second))
    if "How many" not in prompt:
        return None
    numbers = _NUMBER.findall(prompt)
    if len(numbers) != 2 or max(len(n) for n in numbers) > _MAX_DIGITS:
        return None
    first, second = (int(n) for n in numbers)
    operation = next((op for cue, op in _CUES if cue.search(prompt)), None)
    if operation == "/":
        return first // second if second and first % second == 0 else None
    return None if operation is None else _OPERATIONS[operation](first, second)


def _wrong(request: ChatRequest, prompt: str) -> bytes | None:
    """For `mock:wrong`, on a share of questions (which ones depends on the caller and the
    question): the digest that picks the wrong answer. None: answer right."""
    if mock_fault(request.model) != "wrong":
        return None
    seed = _digest(f"{request.caller}\n{prompt}")
    return seed if seed[0] < 256 * WRONG_SHARE else None


def _arithmetic_reply(request: ChatRequest, prompt: str) -> str | None:
    """`The answer is N.` for arithmetic (`A op B`, or a word problem); off by one for a
    share of questions when the model is `mock:wrong`."""
    value = _worked_out(prompt)
    if value is None:
        return None
    wrong = _wrong(request, prompt)
    if wrong is not None:
        value += 1 if wrong[1] % 2 else -1
    return f"The answer is {value}."


def _fact_reply(request: ChatRequest, prompt: str) -> str | None:
    """`The answer is X.` for a fact the mock knows (mock_facts.py); another answer of the
    same kind for a share of questions when the model is `mock:wrong`."""
    known = fact_answer(prompt)
    if known is None:
        return None
    right, others = known
    wrong = _wrong(request, prompt)
    return f"The answer is {right if wrong is None else others[wrong[1] % len(others)]}."


def mock_reply(request: ChatRequest) -> str:
    """The text the mock answers `request` with."""
    prompt = request.messages[-1].content if request.messages else ""
    played = _strategy_reply(request, prompt)
    if played is not None:
        return played
    if "<answer from=" not in prompt:
        computed = _arithmetic_reply(request, prompt) or _fact_reply(request, prompt)
        if computed is not None:
            return computed
    answers = _ANSWER.findall(prompt)
    if answers:
        quoted = " ".join(f"From {name}: {_first_sentence(text)}" for name, text in answers)
        reviews = len(_REVIEW.findall(prompt))
        seen = f" and {reviews} reviews" if reviews else ""
        return f"Combining {len(answers)} answers{seen}. {quoted}"
    seed_text = "\n".join([request.caller, *(m.content for m in request.messages)])
    seed = hashlib.sha256(seed_text.encode()).digest()
    topic = " ".join(prompt.split())[:60] or "this"
    opening = _OPENINGS[seed[0] % len(_OPENINGS)].format(topic=f'"{topic}"')
    detail = _DETAILS[seed[1] % len(_DETAILS)]
    return f"({request.caller}) {opening} {detail}"


def split_tokens(text: str) -> list[str]:
    """Word-sized pieces that join back to `text`."""
    return _TOKEN.findall(text)


def reply_tokens(request: ChatRequest) -> tuple[list[str], FinishReason]:
    """The tokens the mock sends for `request`, cut at its `max_tokens`, and why they end."""
    tokens = split_tokens(mock_reply(request))
    if request.max_tokens is not None and len(tokens) > request.max_tokens:
        return tokens[: request.max_tokens], "length"
    return tokens, "stop"


def _usage(request: ChatRequest, tokens: list[str]) -> Usage:
    prompt_tokens = sum(len(m.content.split()) for m in request.messages)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=len(tokens))


def _failure(fault: str, model: str) -> UpstreamError:
    error = _FAILURES[fault]()
    error.__cause__ = MockFault(f"the model {model!r} is told to fail")
    return error


class _MockStream:
    def __init__(
        self,
        request: ChatRequest,
        tokens: list[str],
        first_token_delay_s: float,
        token_delay_s: float,
        finish_reason: FinishReason,
    ) -> None:
        self._request = request
        self._tokens = tokens
        self._first_token_delay_s = first_token_delay_s
        self._token_delay_s = token_delay_s
        self._finish_reason = finish_reason
        self.usage: Usage | None = None
        self.finish_reason: FinishReason = "stop"

    async def __aiter__(self) -> AsyncIterator[str]:
        await trio.sleep(self._first_token_delay_s)
        fault = mock_fault(self._request.model)
        for index, token in enumerate(self._tokens):
            if index:
                await trio.sleep(self._token_delay_s)
            if fault == "cut" and index == CUT_AFTER_TOKENS:
                raise _failure(fault, self._request.model)
            yield token
        self.usage = _usage(self._request, self._tokens)
        self.finish_reason = self._finish_reason


class MockChatModel:
    def __init__(self, *, first_token_delay_s: float = 0.0, token_delay_s: float = 0.0) -> None:
        self.first_token_delay_s = first_token_delay_s
        self.token_delay_s = token_delay_s
        self._calls: Counter[tuple[str, str]] = Counter()

    async def _misbehave(self, request: ChatRequest, *, streaming: bool) -> float:
        """Fail or stall as the model name asks; returns the delay before the first token."""
        fault = mock_fault(request.model)
        self._calls[request.caller, request.model] += 1
        if fault == "stall":
            await trio.sleep_forever()
        if fault == "slow":
            return self.first_token_delay_s * SLOW_FACTOR
        failing = fault in _FAILURES and not (streaming and fault == "cut")
        if fault == "flaky":
            failing = self._calls[request.caller, request.model] % 2 == 1
        if failing:
            await trio.sleep(self.first_token_delay_s)
            raise _failure(fault or "", request.model)
        return self.first_token_delay_s

    async def complete(self, request: ChatRequest) -> Completion:
        first_token_delay_s = await self._misbehave(request, streaming=False)
        tokens, finish_reason = reply_tokens(request)
        # Take as long as streaming the same answer would, so a demo feels like the real thing.
        await trio.sleep(first_token_delay_s + self.token_delay_s * max(len(tokens) - 1, 0))
        return Completion(
            text="".join(tokens), usage=_usage(request, tokens), finish_reason=finish_reason
        )

    @asynccontextmanager
    async def stream(self, request: ChatRequest) -> AsyncIterator[CompletionStream]:
        first_token_delay_s = await self._misbehave(request, streaming=True)
        tokens, finish_reason = reply_tokens(request)
        yield _MockStream(request, tokens, first_token_delay_s, self.token_delay_s, finish_reason)

    async def aclose(self) -> None:
        return None
