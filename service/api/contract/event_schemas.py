"""What the streams carry, as pydantic models for /openapi.json: every event of
POST /api/process and GET /api/messages/{id}/events (`StreamEvent`, one model per `event:`
name, built from each kind's declaration in events.py), and the chunks of
POST /v1/chat/completions with `stream: true`.

The encoders (sse.py, chat_format.py) write these by hand, because they run once per token
and a model per event would cost more than the rest of the send; the contract tests check
every event of real runs against the schemas these models publish (extra fields
forbidden), so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from functools import reduce
from operator import or_
from typing import Annotated, Any, Literal

from pydantic import Field, create_model

from ...events import EVENT_KINDS, EventKind
from ...llm import FinishReason
from ...shapes import Shape


class EventBase(Shape):
    message_id: str
    conversation_id: str | None = Field(
        default=None, description="The message's conversation; absent when nothing is stored"
    )
    status: str = Field(description="A short line for people")
    source: str = Field(description="The agent or summarizer the event is about")


def published(kind: type[EventKind]) -> type[EventBase]:
    """The model of a kind's frames: what every event has, its `type` and `final`, and its
    own fields."""
    fields: dict[str, Any] = {
        "type": (Literal[kind.KIND], ...),
        "final": (Literal[kind.TERMINAL], ...),
    }
    fields |= {name: (f.annotation, f) for name, f in kind.Fields.model_fields.items()}
    name = kind.SCHEMA_NAME or f"{kind.__name__}Event"
    model: type[EventBase] = create_model(name, __base__=EventBase, **fields)
    return model


EVENT_MODELS = tuple(published(kind) for kind in EVENT_KINDS)
# Built at run time from the kinds, so typed only as what pydantic reads.
StreamEvent: Any = Annotated[reduce(or_, EVENT_MODELS), Field(discriminator="type")]


# --- OpenAI's chat completions ---------------------------------------------------------------


class OpenAIUsage(Shape):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None = Field(
        default=None, description="US dollars of every call, where every price is known"
    )


class Delta(Shape):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = Field(
        default=None, description="The agents' progress and answers, as 'thinking' text"
    )
    reasoning: str | None = Field(
        default=None, description="The same, with OPENAI_REASONING=reasoning"
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
