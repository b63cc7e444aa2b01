"""The messages sent to each agent and to the summarizer, rendered from the ensemble's templates.

A follow-up in a conversation carries its earlier turns: each member gets them as chat
history between its system prompt and its own prompt, and its templates as `history`.

By default answers reach the summarizer wrapped in `<answer from="NAME">` tags: models keep
tagged sources apart reliably, and the mock LLM uses the same tags to show what it combined.
An answer longer than the ensemble's `max_answer_chars` is cut to it first, so one verbose
agent cannot crowd the others out of the summarizer's context.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from ..ensemble import Agent, Member, Summarizer
from ..ensemble.templates import AnswerView, RankView, TurnView, render
from ..llm import ChatMessage
from .context import Turn

TRUNCATION_MARK = "\n[... {} more characters cut]"


def today() -> str:
    return datetime.now(UTC).date().isoformat()


CLIENT_CONTEXT = "The user's application adds these instructions:\n{}"


def _with_history(
    system: str, history: Sequence[Turn], prompt: str, client_context: str | None = None
) -> tuple[ChatMessage, ...]:
    extra = (
        (ChatMessage(role="system", content=CLIENT_CONTEXT.format(client_context)),)
        if client_context
        else ()
    )
    return (
        ChatMessage(role="system", content=system),
        *extra,
        *(ChatMessage(role=turn.role, content=turn.text) for turn in history),
        ChatMessage(role="user", content=prompt),
    )


def _history_views(history: Sequence[Turn]) -> list[TurnView]:
    return [TurnView(role=turn.role, text=turn.text) for turn in history]


def agent_messages(
    agent: Agent,
    question: str,
    history: Sequence[Turn] = (),
    client_context: str | None = None,
) -> tuple[ChatMessage, ...]:
    values = {
        "message": question,
        "agent": agent.name,
        "date": today(),
        "history": _history_views(history),
    }
    return _with_history(
        render(agent.system_prompt, **values),
        history,
        render(agent.user_prompt, **values),
        client_context,
    )


def answer_view(name: str, text: str, budget: int) -> AnswerView:
    """The answer as a template sees it: cut to `budget` characters, with a note if it was."""
    if len(text) <= budget:
        return AnswerView(name=name, text=text)
    cut = text[:budget] + TRUNCATION_MARK.format(len(text) - budget)
    return AnswerView(name=name, text=cut, truncated=True)


def summary_messages(
    summarizer: Summarizer,
    question: str,
    answers: Sequence[tuple[str, str]],
    missing: Sequence[str],
    *,
    max_answer_chars: int,
    history: Sequence[Turn] = (),
    client_context: str | None = None,
    reviews: Sequence[AnswerView] = (),
    ranking: Sequence[RankView] = (),
    default_prompt: str | None = None,
) -> tuple[ChatMessage, ...]:
    """`answers` are (agent name, answer text) pairs in the order the agents are listed;
    `reviews` and `ranking` a council's; `default_prompt` the strategy's prompt for a
    summarizer whose file sets none (the chairman's, for a council)."""
    views = [answer_view(name, text, max_answer_chars) for name, text in answers]
    values = {
        "message": question,
        "summarizer": summarizer.name,
        "date": today(),
        "answers": views,
        "missing": list(missing),
        "history": _history_views(history),
        "reviews": list(reviews),
        "ranking": list(ranking),
    }
    prompt = summarizer.prompt or default_prompt or summarizer.user_prompt
    return _with_history(
        render(summarizer.system_prompt, **values),
        history,
        render(prompt, **values),
        client_context,
    )


def step_messages(
    member: Member,
    template: str,
    question: str,
    shown: Sequence[AnswerView],
    *,
    own: str = "",
    round: int = 1,
    rounds: int = 1,
    history: Sequence[Turn] = (),
    client_context: str | None = None,
) -> tuple[ChatMessage, ...]:
    """A later step's messages to `member`: its own system prompt, the conversation, and the
    step's `template` with the answers it is `shown` (cut to the ensemble's bound already)."""
    values = {
        "message": question,
        "agent": member.name,
        "summarizer": member.name,
        "date": today(),
        "history": _history_views(history),
        "answers": list(shown),
        "missing": [],
        "reviews": [],
        "ranking": [],
        "own": own,
        "round": round,
        "rounds": rounds,
    }
    return _with_history(
        render(member.system_prompt, **values),
        history,
        render(template, **values),
        client_context,
    )
