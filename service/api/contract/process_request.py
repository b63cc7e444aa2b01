"""Parse and validate the body of POST /api/process: the `PipelineRequest`, and what to do
when the client disconnects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ...errors import InvalidRequest
from ...pipeline import PipelineRequest
from .validation import NOT_BLANK, ClientId, checked_text, first_problem

# An ensemble is looked up by name among those loaded, never stored unless found.
EnsembleName = Annotated[str, Field(min_length=1, max_length=128)]

OnDisconnect = Literal["cancel", "continue"]


def _whole(value: object) -> object:
    """7.0 as 7: JSON Schema, as published, counts it an integer; "7" and 7.5 stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class ParentMessage(BaseModel):
    """The turn a new message follows: a stored message, its id and which version."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    message_id: ClientId
    version: Annotated[int, BeforeValidator(_whole)] = Field(ge=1, le=2**31 - 1)


class ProcessBody(BaseModel):
    """A question for the agents of an ensemble."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        # A `message`, unless the stored one is run again; a `parent` only in a conversation
        # named, and not for a regenerate (which keeps its place).
        json_schema_extra={
            "anyOf": [
                {"required": ["message"], "properties": {"message": {"type": "string"}}},
                {"required": ["regenerate"], "properties": {"regenerate": {"const": True}}},
            ],
            "if": {"required": ["parent"], "properties": {"parent": {"type": "object"}}},
            "then": {
                "required": ["conversation_id"],
                "properties": {
                    "conversation_id": {"type": "string"},
                    "regenerate": {"const": False},
                },
            },
        },
    )

    message: str | None = Field(
        default=None,
        pattern=NOT_BLANK,
        description=(
            "The question (not blank, no NUL character; at most MAX_MESSAGE_CHARS); "
            "needed unless `regenerate` is true"
        ),
    )
    message_id: ClientId = Field(
        description="Your id for it, unique per caller: sending it again never runs it twice"
    )
    conversation_id: ClientId | None = Field(
        default=None, description="Continue this conversation: its turns are the history"
    )
    ensemble: EnsembleName | None = Field(
        default=None, description="Which ensemble; else the default"
    )
    on_disconnect: OnDisconnect = Field(
        default="cancel",
        description='"cancel": a hang-up cancels every upstream call; "continue": the run '
        "finishes and is kept, to resume (needs storage)",
    )
    regenerate: bool = Field(
        default=False,
        description="Run the stored message `message_id` again, as its next version, keeping "
        "the answers before (needs storage); with a `message`, that text instead",
    )
    parent: ParentMessage | None = Field(
        default=None,
        description="With `conversation_id`: the turn a new message follows, a message of that "
        "conversation (its history is the turns up to it); default: the conversation's newest. "
        "An edit or a regenerate keeps the place of the message it replaces (needs storage)",
    )
    stream_agents: bool | None = Field(
        default=None,
        description="Each agent's answer streams as `agent.delta` events (false: it arrives "
        "whole in `agent.completed`); default: the server's STREAM_AGENTS (true)",
    )


@dataclass(frozen=True, slots=True)
class ProcessRequest:
    pipeline: PipelineRequest
    # "cancel": a hang-up cancels every upstream call at once; "continue": the run finishes
    # and is stored, for the client to resume.
    on_disconnect: OnDisconnect = "cancel"
    # Run the stored message again; the pipeline's message is "" until the store gives it.
    regenerate: bool = False
    # The agents' answers stream (None: as the server's STREAM_AGENTS says).
    stream_agents: bool | None = None
    # The turn a new message follows: (message_id, version); None: the conversation's newest.
    parent: tuple[str, int] | None = None


def _is_utf8(value: str | None) -> bool:
    """False for text with lone surrogates (`"\\ud800"` is valid JSON, but no character)."""
    try:
        (value or "").encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_process_request(raw: bytes, *, max_message_chars: int) -> ProcessRequest:
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRequest("the body is nested too deeply") from exc
    except ValueError as exc:
        # An integer literal longer than Python's digit limit (sys.get_int_max_str_digits).
        raise InvalidRequest("the body holds a number with too many digits") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    if isinstance(data.get("message"), str):
        # Before the pattern (which refuses it too): told as a NUL, not as a blank message.
        checked_text(data["message"], "message")
    try:
        body = ProcessBody.model_validate(data)
    except ValidationError as exc:
        raise first_problem(exc) from exc
    for name in ("message", "message_id", "conversation_id", "ensemble"):
        if not _is_utf8(getattr(body, name)):
            raise InvalidRequest(f"{name}: must be valid Unicode text", field=name)
    if body.parent is not None and body.conversation_id is None:
        raise InvalidRequest("parent: needs the conversation_id it is in", field="parent")
    if body.parent is not None and body.regenerate:
        raise InvalidRequest(
            "parent: a regenerate keeps the place of the message it runs again", field="parent"
        )
    if body.message is None and not body.regenerate:
        raise InvalidRequest("message: is required (unless regenerate is true)", field="message")
    message = body.message or ""
    if body.message is not None and not message.strip():
        raise InvalidRequest("message: must not be blank", field="message")
    if len(message) > max_message_chars:
        raise InvalidRequest(
            f"message: must be at most {max_message_chars} characters", field="message"
        )
    pipeline = PipelineRequest(
        message=message,
        message_id=body.message_id,
        conversation_id=body.conversation_id,
        ensemble=body.ensemble,
    )
    return ProcessRequest(
        pipeline=pipeline,
        on_disconnect=body.on_disconnect,
        regenerate=body.regenerate,
        stream_agents=body.stream_agents,
        parent=(body.parent.message_id, body.parent.version) if body.parent else None,
    )
