"""What the streams carry, as pydantic models for /openapi.json: every event of
POST /api/process and GET /api/messages/{id}/events (`StreamEvent`, one model per `event:`
name), and the chunks of POST /v1/chat/completions with `stream: true`.

The encoders (sse.py, chat_format.py) write these by hand, because they run once per token
and a model per event would cost more than the rest of the send; the contract tests check
every event of real runs against the schemas these models publish (extra fields
forbidden), so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ..llm import FinishReason
from .schemas import Shape, Timings, TokenUsage


class EventError(Shape):
    code: str = Field(description="Why: see the README's table of error codes")
    message: str


class AgentCounts(Shape):
    succeeded: int
    failed: int
    cut: int


class Charge(Shape):
    requests: int
    tokens: int


class EventBase(Shape):
    message_id: str
    conversation_id: str | None = Field(
        default=None, description="The message's conversation; absent when nothing is stored"
    )
    status: str = Field(description="A short line for people")
    source: str = Field(description="The agent or summarizer the event is about")


class AgentStartedEvent(EventBase):
    type: Literal["agent.started"]
    final: Literal[False]


class AgentRetryingEvent(EventBase):
    type: Literal["agent.retrying"]
    final: Literal[False]
    attempt: int = Field(description="The call that comes next (2 for the first retry)")
    model: str
    error: EventError
    delay_ms: float = Field(description="The wait before that call")


class AgentCompletedEvent(EventBase):
    type: Literal["agent.completed"]
    final: Literal[False]
    message: str = Field(description="The agent's answer")
    model: str = Field(description="The model that gave it (a fallback, if the primary failed)")
    attempts: int


class AgentFailedEvent(EventBase):
    type: Literal["agent.failed"]
    final: Literal[False]
    error: EventError
    attempts: int


class SummaryStartedEvent(EventBase):
    type: Literal["summary.started"]
    final: Literal[False]
    agents: list[str] = Field(description="The agents whose answers are combined")
    missing: list[str] = Field(description="The agents without an answer")
    ensemble_version: str | None = None


class SummaryDeltaEvent(EventBase):
    type: Literal["summary.delta"]
    final: Literal[False]
    message: str = Field(description="The next piece of the summary")


class SummaryRestartedEvent(EventBase):
    type: Literal["summary.restarted"]
    final: Literal[False]
    model: str = Field(description="The model the summary starts again on")
    error: EventError
    discard: Literal[True] = Field(description="Drop the summary text received so far")


class DoneEvent(EventBase):
    type: Literal["done"]
    final: Literal[True]
    agents: AgentCounts
    models: dict[str, str] = Field(description="Each member that answered: the model that did")
    usage: dict[str, TokenUsage] = Field(description="Tokens, per agent and summarizer")
    timings: Timings
    ensemble_version: str | None = None
    finish_reason: FinishReason | None = Field(
        default=None,
        description=(
            "Why the summary ended: `stop` (it was done), `length` (its `max_tokens` cut it), "
            "`content_filter` (the provider's filter stopped it)"
        ),
    )
    charged: Charge | None = Field(
        default=None, description="With rate limits on: what the request was charged"
    )


class ErrorEvent(EventBase):
    type: Literal["error"]
    final: Literal[True]
    error: EventError
    usage: dict[str, TokenUsage]
    agents: AgentCounts | None = None


StreamEvent = Annotated[
    AgentStartedEvent
    | AgentRetryingEvent
    | AgentCompletedEvent
    | AgentFailedEvent
    | SummaryStartedEvent
    | SummaryDeltaEvent
    | SummaryRestartedEvent
    | DoneEvent
    | ErrorEvent,
    Field(discriminator="type"),
]


# --- OpenAI's chat completions ---------------------------------------------------------------


class OpenAIUsage(Shape):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Delta(Shape):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = Field(
        default=None, description="The agents' progress and answers, as 'thinking' text"
    )


class ChunkChoice(Shape):
    index: int
    delta: Delta
    finish_reason: FinishReason | None


class ChatCompletionChunk(Shape):
    """One `data:` line of a streamed completion; the stream ends with `data: [DONE]`. A
    failure after the stream began is an OpenAI error object instead."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: OpenAIUsage | None = Field(
        default=None, description="On the last chunk, with `stream_options.include_usage`"
    )
    fanout: dict[str, Any] | None = Field(
        default=None,
        description=(
            "The ensemble's extension: on an agent's chunk `event`, `agent`, `model`, "
            "`attempts`, `error`, `text`; on the finishing chunk `agents`, `models`, `usage` "
            "per call, `timings`"
        ),
    )


class CompletionMessage(Shape):
    role: Literal["assistant"]
    content: str = Field(description="The summary")
    reasoning_content: str = Field(description="The agents' progress and answers")


class CompletionChoice(Shape):
    index: int
    message: CompletionMessage
    finish_reason: FinishReason


class ChatCompletion(Shape):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: OpenAIUsage = Field(description="Every call of the run, agents and summarizer")
    fanout: dict[str, Any] = Field(
        description="`agents`, `models`, `usage` per call, `timings`, and `answers`: each agent's"
    )
