"""The published contract: GET /openapi.json (OpenAPI 3.1), generated from the app's own
routes and the pydantic models that read their requests and shape their answers, and GET
/docs, a page that shows it.

Each route says what it takes and answers, beside the route itself:

    @routes.get("/api/messages/<message_id>")
    @requires("history")
    @documented("One message", tag="conversations", query=OwnerQuery,
                replies={200: returns(Message)}, errors=(400, 404, 503))

What every route shares is added here, not repeated at each: 401 and 403 (and 429 for
repeated failed sign-ins) on every route that needs a caller, 400, 413 and 415 on every
route with a body, 500 everywhere, the error envelope (OpenAI's shape under /v1/), and the
security schemes. A route without `documented` makes the document fail to build: the tests
build it, so no route ships undocumented.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema
from quart import Blueprint, Quart, current_app

from ... import __version__
from ..access import requires
from ..envelope import OPENAI_PREFIX
from .event_schemas import ChatCompletion, ChatCompletionChunk, StreamEvent
from .schemas import ErrorEnvelope, OpenAIErrorEnvelope
from .validation import ID_PATTERN, MAX_ID

F = TypeVar("F", bound=Callable[..., Any])

contract = Blueprint("contract", __name__)


@dataclass(frozen=True, slots=True)
class Reply:
    description: str
    model: type[BaseModel] | None = None  # a JSON body of this model
    media: str | None = None  # another body: its media type
    schema: Mapping[str, Any] | None = None  # ... and its schema
    headers: Mapping[str, str] = field(default_factory=dict)  # name: what it says
    content: Mapping[str, Mapping[str, Any]] | None = None  # several media: each one's schema
    # What a client can call next with this answer: name -> OpenAPI link object.
    links: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # An event stream's events, when a model of their own describes them (a component).
    events: type[BaseModel] | None = None


def returns(
    model: type[BaseModel],
    description: str = "",
    links: Mapping[str, Mapping[str, Any]] | None = None,
    **headers: str,
) -> Reply:
    return Reply(
        description or (model.__doc__ or model.__name__).strip(),
        model,
        headers=headers,
        links=links or {},
    )


def link(operation_id: str, description: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link: call `operation_id` with these parameters (runtime expressions)."""
    return {"operationId": operation_id, "description": description, "parameters": parameters}


def raw(
    media: str, description: str, schema: Mapping[str, Any] | None = None, **headers: str
) -> Reply:
    """A body that is not one of the models: a page, a script, Prometheus's text."""
    return Reply(description, media=media, schema=schema or {"type": "string"}, headers=headers)


def empty(description: str) -> Reply:
    return Reply(description)


def sse_event(component: str, *, done_marker: bool = False) -> dict[str, Any]:
    """One Server-Sent Event whose `data:` is a `component` (a schema name) as JSON; with
    `done_marker`, `data: [DONE]` may end the stream (OpenAI's convention). This is how
    OpenAPI 3.2 describes an event (`itemSchema`), and what 3.1 tools read `schema` as."""
    data: dict[str, Any] = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": f"#/components/schemas/{component}"},
    }
    if done_marker:
        data = {"anyOf": [{"const": "[DONE]"}, data]}
    return {
        "type": "object",
        "description": f"A Server-Sent Event; its `data` is a {component}",
        "properties": {
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
            "data": data,
        },
        "required": ["data"],
    }


def event_stream(
    component: str | type[BaseModel],
    description: str,
    links: Mapping[str, Mapping[str, Any]] | None = None,
    **headers: str,
) -> Reply:
    """A `text/event-stream` of `component` events (a schema's name, or the model whose
    schema it is: then the document includes it)."""
    model = None if isinstance(component, str) else component
    name = component if isinstance(component, str) else component.__name__
    return Reply(
        description,
        media="text/event-stream",
        schema=sse_event(name),
        headers=headers,
        links=links or {},
        events=model,
    )


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    tag: str
    description: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    headers: Mapping[str, str | tuple[str, Mapping[str, Any]]]  # name: text, or (text, schema)
    path: Mapping[str, str]
    replies: Mapping[int, Reply]
    errors: Sequence[int]


def documented(
    summary: str,
    *,
    tag: str,
    replies: Mapping[int, Reply],
    description: str = "",
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    headers: Mapping[str, str | tuple[str, Mapping[str, Any]]] | None = None,
    path: Mapping[str, str] | None = None,
    errors: Sequence[int] = (),
) -> Callable[[F], F]:
    """What the route takes and answers: `errors` are the statuses it answers with the error
    envelope, beyond those every route of its kind has."""
    operation = Operation(
        summary, tag, description, body, query, headers or {}, path or {}, replies, errors
    )

    def mark(view: F) -> F:
        view.operation = operation  # type: ignore[attr-defined]
        return view

    return mark


class Undocumented(Exception):
    """A route without `documented`: the contract would not describe it."""


_STATUS_TEXT = {
    400: "The request is not valid: the envelope names the field",
    401: "No valid key or token (see `WWW-Authenticate`)",
    403: "The caller may not do this",
    404: "Not found (or not yours: the same answer)",
    409: "In conflict with the message's state",
    413: "The body is over 1 MiB",
    415: "The body is not `application/json`",
    429: "Too many requests: `Retry-After` says when to come back",
    500: "An error of the service itself",
    502: "The language model provider failed",
    503: "Unavailable for now (database, limiter, shutdown)",
    504: "The request's deadline passed",
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": "`Bearer`"},
    503: {"Retry-After": "Whole seconds to wait, when the service knows"},
    429: {
        "Retry-After": "Whole seconds to wait",
        "RateLimit": "The remaining quota (IETF draft fields)",
        "RateLimit-Policy": "The limits that apply",
    },
}
_REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
_SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`fo_...`) or, with AUTH=jwt, a JWT from your identity "
        "provider; METRICS_TOKEN for /metrics",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def _headers(named: Mapping[str, str]) -> dict[str, Any]:
    return {
        name: {"description": text, "schema": {"type": "string"}} for name, text in named.items()
    }


def _reply(reply: Reply) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.model is not None:
        ref = {"$ref": f"#/components/schemas/{reply.model.__name__}"}
        out["content"] = {"application/json": {"schema": ref}}
    elif reply.media is not None:
        out["content"] = {reply.media: {"schema": dict(reply.schema or {})}}
    elif reply.content is not None:
        out["content"] = {
            media: {"schema": dict(schema)} for media, schema in reply.content.items()
        }
    if reply.headers:
        out["headers"] = _headers(reply.headers)
    if reply.links:
        out["links"] = {name: dict(value) for name, value in reply.links.items()}
    return out


def _error_statuses(operation: Operation, required: str, anonymous: bool) -> list[int]:
    statuses = set(operation.errors) | {500}
    if required != "open":
        statuses |= {403} if anonymous else {401, 403, 429}
    if operation.body is not None:
        statuses |= {400, 413, 415}
    return sorted(statuses - set(operation.replies))


@functools.cache
def _query_schema(query: type[BaseModel]) -> dict[str, Any]:
    return query.model_json_schema(by_alias=True)


def _parameters(rule_path: str, operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for converter, name in _PARAM.findall(rule_path):
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if converter != "path":
            # An id in a path: the one rule for ids (validation.py), checked by the route.
            schema["maxLength"] = MAX_ID
            schema["pattern"] = ID_PATTERN
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": operation.path.get(name, ""),
                "schema": schema,
            }
        )
    if operation.query is not None:
        query_schema = _query_schema(operation.query)
        for name, schema in query_schema.get("properties", {}).items():
            described = {k: v for k, v in schema.items() if k not in ("description", "title")}
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in query_schema.get("required", []),
                    "description": schema.get("description", ""),
                    "schema": described,
                }
            )
    for name, header in operation.headers.items():
        text, header_schema = header if isinstance(header, tuple) else (header, {})
        parameters.append(
            {
                "name": name,
                "in": "header",
                "required": False,
                "description": text,
                "schema": dict(header_schema) or {"type": "string"},
            }
        )
    return parameters


def _models(app: Quart) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {
        model.__name__: model
        for model in (ErrorEnvelope, OpenAIErrorEnvelope, ChatCompletion, ChatCompletionChunk)
    }
    for view in app.view_functions.values():
        operation: Operation | None = getattr(view, "operation", None)
        if operation is None:
            continue
        if operation.body is not None:
            found[operation.body.__name__] = operation.body
        for reply in operation.replies.values():
            for model in (reply.model, reply.events):
                if model is not None:
                    found[model.__name__] = model
    return list(found.values())


@functools.cache
def _schemas(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    """The JSON Schemas of `models` and of the stream's events: most of the document's cost
    (25 ms), made once for every app a process makes (the tests make hundreds)."""
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=_REF
    )
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    events = TypeAdapter(StreamEvent).json_schema(ref_template=_REF)
    schemas.update(events.pop("$defs", {}))
    schemas["StreamEvent"] = events
    return schemas


def openapi_document(app: Quart, *, anonymous: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route `app` serves; with `anonymous` (AUTH=none)
    no route asks for a credential, so none says it needs one or may answer 401."""
    schemas = dict(_schemas(tuple(_models(app))))  # the document is only ever read

    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        operation = getattr(view, "operation", None)
        if operation is None:
            raise Undocumented(f"{rule.rule} ({rule.endpoint}) has no @documented")
        required = getattr(view, "required", None)
        path = _PARAM.sub(r"{\2}", rule.rule)
        envelope = OpenAIErrorEnvelope if path.startswith(OPENAI_PREFIX) else ErrorEnvelope
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            responses = {
                str(status): _reply(reply) for status, reply in sorted(operation.replies.items())
            }
            for status in _error_statuses(operation, str(required), anonymous):
                responses[str(status)] = _reply(
                    Reply(
                        _STATUS_TEXT.get(status) or HTTPStatus(status).phrase,
                        envelope,
                        headers=_ERROR_HEADERS.get(status, {}),
                    )
                )
            entry: dict[str, Any] = {
                "operationId": rule.endpoint.replace(".", "_"),
                "summary": operation.summary,
                "tags": [operation.tag],
                "parameters": _parameters(rule.rule, operation),
                "responses": responses,
                "security": (
                    [] if required == "open" or anonymous else [{"bearer": []}, {"apiKey": []}]
                ),
                # Who may call it: open, metrics (an admin or METRICS_TOKEN), or a scope.
                "x-access": required,
            }
            if operation.description:
                entry["description"] = operation.description
            if operation.body is not None:
                ref = {"$ref": f"#/components/schemas/{operation.body.__name__}"}
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref}},
                }
            paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "llm-fanout",
            "version": __version__,
            "description": (
                "One request to several LLM agents at once; a summarizer combines their "
                "answers, streamed back as Server-Sent Events. This document describes the "
                "server that serves it: with AUTH=none no route needs a credential."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": _SECURITY_SCHEMES},
    }


@contract.get("/openapi.json")
@requires("open")
@documented(
    "This document",
    tag="contract",
    replies={
        200: raw("application/json", "The OpenAPI 3.1 document of every route", {"type": "object"})
    },
)
async def openapi() -> dict[str, Any]:
    document: dict[str, Any] = current_app.extensions["fanout.openapi"]
    return document


def publish_contract(app: Quart) -> None:
    """Build the document once, when the app is made: its routes do not change after."""
    resources = app.extensions["fanout"]
    app.extensions["fanout.openapi"] = openapi_document(
        app, anonymous=resources.authenticator.anonymous
    )
