"""The messages sent to each agent and to the summarizer.

Answers reach the summarizer wrapped in `<answer from="NAME">` tags: models keep tagged
sources apart reliably, and the mock LLM uses the same tags to show what it combined.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ensemble import Agent, Summarizer
from ..llm import ChatMessage


def agent_messages(agent: Agent, question: str) -> tuple[ChatMessage, ...]:
    return (
        ChatMessage(role="system", content=agent.system_prompt),
        ChatMessage(role="user", content=question),
    )


def summary_messages(
    summarizer: Summarizer,
    question: str,
    answers: Sequence[tuple[str, str]],
    missing: Sequence[str],
) -> tuple[ChatMessage, ...]:
    """`answers` are (agent name, answer text) pairs in the order the agents are listed."""
    parts = [f"The user asked:\n<question>\n{question}\n</question>"]
    parts.append(f"Answers from {len(answers)} agent(s):")
    parts.extend(f'<answer from="{name}">\n{text}\n</answer>' for name, text in answers)
    if missing:
        parts.append(f"No answer arrived from: {', '.join(missing)}. Combine the answers above.")
    return (
        ChatMessage(role="system", content=summarizer.system_prompt),
        ChatMessage(role="user", content="\n\n".join(parts)),
    )
