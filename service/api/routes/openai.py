"""The ensemble as an OpenAI model: GET /v1/models, GET /v1/models/{id}, and
POST /v1/chat/completions with `model` = an ensemble's name.

- `messages`: the last user message is the question; the user and assistant turns before it
  are the history (the newest whole exchanges that fit in HISTORY_MAX_CHARS); system and
  developer messages reach every agent and the summarizer as extra instructions beside
  their own prompts. Text only: a string, or content parts of type `text`.
- `max_tokens` / `max_completion_tokens` cap the summary (the summarizer's own `max_tokens`,
  if smaller, stays). `temperature` and `user` are accepted and ignored: each member keeps
  its own temperature, and the caller is known from its key. `metadata.conversation_id`
  files the message in that conversation, `metadata.message_id` makes the request
  idempotent (else each request is a new message). Unknown fields are ignored.
- `tools`, `functions`, `n` > 1 and audio are refused with 400: the ensemble answers text.

The run is the same as POST /api/process's: the same keys, limits, record and cancellation
when the client hangs up. See chat_format.py for how its events become OpenAI's chunks.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from quart import Blueprint, Response, current_app

from ...errors import InvalidRequest, ModelNotFound, ServiceError
from ...launch import RunRequest, launch
from ...pipeline import PipelineRequest, Turn
from ...resources import Resources
from ...storage.history_budget import newest_that_fit
from ..access import caller_address, current_principal, requires
from ..contract import schemas
from ..contract.document import Reply, documented, returns, sse_event
from ..contract.event_schemas import ChatCompletion
from ..contract.schemas import respond
from ..contract.validation import NO_NUL, checked_id, checked_text, first_problem
from ..writers.chat_format import ChatChunks
from ..writers.chat_format import ChatCompletion as Completion
from .front_door import (
    event_stream_response,
    json_body,
    pick_ensemble,
    safe_headers,
    trace_headers,
)

openai_routes = Blueprint("openai", __name__)

ROLES = Literal["system", "developer", "user", "assistant", "tool", "function"]


# Checked by the route (`_text`, naming `messages[i].content`); published here.
TextContent = Annotated[str, WithJsonSchema({"type": "string", "pattern": NO_NUL})]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: ROLES
    content: TextContent | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's chat completion request, with an ensemble as the model. Unknown fields are
    ignored; `tools`, `functions`, `n` > 1 and audio are refused."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=128)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    user: str | None = None
    metadata: dict[str, str] | None = None
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None


def _resources() -> Resources:
    resources: Resources = current_app.extensions["fanout"]
    return resources


def _model(name: str, created: int) -> schemas.Model:
    return schemas.Model(id=name, object="model", created=created, owned_by="llm-fanout")


@openai_routes.get("/v1/models")
@requires("process")
@documented(
    "Every loaded ensemble, as a model", tag="openai", replies={200: returns(schemas.ModelList)}
)
async def models() -> dict[str, Any]:
    loaded = _resources().ensembles.current
    created = int(loaded.loaded_at.timestamp())
    listed = [_model(name, created) for name in loaded.ensembles]
    return respond(schemas.ModelList(object="list", data=listed))


@openai_routes.get("/v1/models/<path:model_id>")
@requires("process")
@documented(
    "One ensemble, as a model",
    tag="openai",
    path={"model_id": "An ensemble's name"},
    replies={200: returns(schemas.Model)},
    errors=(404,),
)
async def model(model_id: str) -> dict[str, Any]:
    loaded = _resources().ensembles.current
    if model_id not in loaded.ensembles:
        raise ModelNotFound(f"The model {model_id!r} does not exist", field="model")
    return respond(_model(model_id, int(loaded.loaded_at.timestamp())))


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return checked_text(message.content or "", f"messages[{index}].content")
    texts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequest(
                f"messages[{index}].content: only text parts are supported",
                field=f"messages[{index}].content",
            )
        texts.append(checked_text(part["text"], f"messages[{index}].content"))
    return "\n".join(texts)


def _refuse_unsupported(body: ChatRequest) -> None:
    for name in ("tools", "functions"):
        if getattr(body, name):
            raise InvalidRequest(f"{name}: not supported; the ensemble answers in text", field=name)
    if body.n is not None and body.n != 1:
        raise InvalidRequest("n: only one choice (n = 1) is supported", field="n")
    if body.audio or (body.modalities and set(body.modalities) - {"text"}):
        raise InvalidRequest("modalities: only text is supported", field="modalities")


def _conversation(
    body: ChatRequest, history_max_chars: int
) -> tuple[str, tuple[Turn, ...], str | None]:
    """The question (the last user message), the turns before it, the client's instructions."""
    texts = [_text(message, index) for index, message in enumerate(body.messages)]
    last_user = max(
        (index for index, message in enumerate(body.messages) if message.role == "user"),
        default=None,
    )
    if last_user is None or not texts[last_user].strip():
        raise InvalidRequest("messages: needs a user message with text", field="messages")
    instructions = [
        text
        for message, text in zip(body.messages, texts, strict=True)
        if message.role in ("system", "developer") and text.strip()
    ]
    turns: list[Turn] = []
    for index in range(last_user):
        message = body.messages[index]
        if message.role in ("tool", "function"):
            raise InvalidRequest(
                f"messages[{index}]: tool results are not supported", field=f"messages[{index}]"
            )
        if message.role in ("user", "assistant") and texts[index].strip():
            turns.append(Turn(message.role, texts[index]))
    return (
        texts[last_user],
        within_budget(turns, history_max_chars),
        "\n\n".join(instructions) or None,
    )


def within_budget(turns: list[Turn], max_chars: int) -> tuple[Turn, ...]:
    """The newest whole exchanges that fit, by the rule of a stored conversation: an
    exchange is a user turn and the assistant turns after it."""
    exchanges: list[list[Turn]] = []
    for turn in turns:
        if turn.role == "user" or not exchanges:
            exchanges.append([])
        exchanges[-1].append(turn)
    sizes = (sum(len(turn.text) for turn in exchange) for exchange in reversed(exchanges))
    kept = newest_that_fit(sizes, max_chars)
    return tuple(turn for exchange in exchanges[len(exchanges) - kept :] for turn in exchange)


def _metadata_id(body: ChatRequest, name: str) -> str | None:
    value = (body.metadata or {}).get(name)
    return None if value is None else checked_id(value, f"metadata.{name}")


def _error_classes() -> dict[str, type[ServiceError]]:
    known: dict[str, type[ServiceError]] = {}
    pending: list[type[ServiceError]] = [ServiceError]
    while pending:
        kind = pending.pop()
        known.setdefault(kind.code, kind)
        pending.extend(kind.__subclasses__())
    return known


ERROR_CLASSES = _error_classes()
# What a run that fails answers with, when it is answered whole.
RUN_STATUSES = {kind.status for kind in ERROR_CLASSES.values() if kind.status >= 500}


@openai_routes.post("/v1/chat/completions")
@requires("process")
@documented(
    "The ensemble answers as one OpenAI model: whole, or streamed as chunks",
    tag="openai",
    description=(
        "The last user message is the question, the turns before it the history; system "
        "and developer messages reach every member beside its own prompt. With `stream: "
        "true` the answer is `chat.completion.chunk` events (ChatCompletionChunk), then "
        "`data: [DONE]`; the agents' work is `reasoning_content`, with a `fanout` extension."
    ),
    body=ChatRequest,
    replies={
        200: Reply(
            "The completion (`stream: false`), or its chunks (`stream: true`)",
            content={
                "application/json": {"$ref": "#/components/schemas/ChatCompletion"},
                "text/event-stream": sse_event("ChatCompletionChunk", done_marker=True),
            },
        )
    },
    errors=tuple(sorted({404, 429} | RUN_STATUSES)),
)
async def chat_completions() -> Response | tuple[dict[str, Any], int, dict[str, str]]:
    resources = _resources()
    settings = resources.settings
    raw = await json_body()
    try:
        body = ChatRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise first_problem(exc) from exc
    _refuse_unsupported(body)
    question, history, instructions = _conversation(body, settings.history_max_chars)
    if len(question) > settings.max_message_chars:
        raise InvalidRequest(
            f"messages: the last user message is over {settings.max_message_chars} characters",
            field="messages",
        )
    loaded, ensemble_name, ensemble = pick_ensemble(
        resources,
        body.model,
        unknown=lambda _: ModelNotFound(f"The model {body.model!r} does not exist", field="model"),
    )
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    launched = await launch(
        resources,
        current_principal(),
        RunRequest(
            pipeline=PipelineRequest(
                message=question,
                message_id=_metadata_id(body, "message_id") or completion_id,
                conversation_id=_metadata_id(body, "conversation_id"),
                ensemble=ensemble_name,
            ),
            ensemble_name=ensemble_name,
            ensemble=ensemble,
            loaded=loaded,
            route="/v1/chat/completions",
            trace_headers=trace_headers(),
            client_address=caller_address(),
            history=history,
            client_context=instructions,
            summary_max_tokens=body.max_completion_tokens or body.max_tokens,
            # A whole completion has the agents' answers whole; a stream, as they come.
            stream_agents=None if body.stream and settings.openai_reasoning != "off" else False,
        ),
    )
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = ChatChunks(
            completion_id=completion_id,
            model=ensemble_name,
            include_usage=include_usage,
            reasoning=settings.openai_reasoning,
        )
        return event_stream_response(resources, launched, present=chunks.present)
    whole = Completion(completion_id=completion_id, model=ensemble_name)
    async with trio.open_nursery() as nursery:
        if launched.drive is not None:
            nursery.start_soon(launched.drive)
        after = 0
        while parts := await launched.source.frames_after(after):
            for part in parts:
                whole.add(*part)
            after = parts[-1][0]
        # As a stream's body does when its last event is out: a run has stored its end by
        # then, and a follower's held slot is given back.
        nursery.cancel_scope.cancel()
    if whole.final is None:
        raise run_failed(whole.error or {})
    completion = ChatCompletion.model_validate(whole.json())
    return respond(completion), 200, safe_headers(launched.headers)


def run_failed(error: dict[str, Any]) -> ServiceError:
    """A run that ended with `error`, answered whole (stream: false): the error class of
    its code, so its status too (an upstream failure is a 5xx, the deadline 504)."""
    kind = ERROR_CLASSES.get(str(error.get("code")), ServiceError)
    return kind(str(error.get("message") or kind.default_message))
