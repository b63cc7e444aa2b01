"""GET /openapi.json: a valid OpenAPI 3.1 document, built from the models the routes use,
that names every route the app serves and no route it does not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel
from quart import Quart

from service.api.access import requires
from service.api.contract.document import Undocumented, openapi_document
from service.api.contract.process_request import ProcessBody
from service.api.contract.schemas import ErrorEnvelope, Health
from service.app import create_app
from tests.contract.conftest import concrete, operations, published
from tests.integration.harness import running_service

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
# A value for each path parameter, so every documented path can be asked for.
PATH_VALUES = {
    "conversation_id": "c-none",
    "message_id": "m-none",
    "key_id": "k-none",
    "model_id": "fanout",
    "name": "app.js",
    "evaluation_id": "ev-none",
}


@pytest.mark.parametrize("auth", ["keys", "none"])
async def test_the_document_is_valid_openapi_3_1_with_security_and_event_schemas(
    tmp_path: Path, auth: str
) -> None:
    async with running_service(tmp_path, None, env={"AUTH": auth}) as service:
        document = await published(service.client)
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"
    schemas = document["components"]["schemas"]
    operation_ids = {operation["operationId"] for _, _, operation in operations(document)}
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    event_types = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["StreamEvent"]["oneOf"]}
    assert {"AgentStartedEvent", "SummaryDeltaEvent", "DoneEvent", "ErrorEvent"} <= event_types
    assert {"ErrorEnvelope", "OpenAIErrorEnvelope", "ChatCompletionChunk"} <= set(schemas)
    for method, path, operation in operations(document):
        assert operation["x-access"] in {"open", "metrics", "process", "history", "admin"}
        assert "500" in operation["responses"], (method, path)
        if operation["x-access"] != "open" and auth == "keys":
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            assert operation["security"], (method, path)
        if operation["x-access"] == "open" or auth == "none":
            # Nothing asks for a credential, so nothing may be refused for lack of one.
            assert "401" not in operation["responses"], (method, path)
            assert operation["security"] == [], (method, path)
        for reply in operation["responses"].values():
            for name, target in reply.get("links", {}).items():
                assert target["operationId"] in operation_ids, (method, path, name)
        envelope = "OpenAIErrorEnvelope" if path.startswith("/v1/") else "ErrorEnvelope"
        error = operation["responses"]["500"]["content"]["application/json"]["schema"]
        assert error == {"$ref": f"#/components/schemas/{envelope}"}, (method, path)


async def test_every_route_served_is_documented_and_every_documented_route_is_served(
    tmp_path: Path,
) -> None:
    async with running_service(tmp_path, None) as service:
        document = await published(service.client)
        documented = {(method, path) for method, path, _ in operations(document)}
        # The app the server runs, built again from the same resources.
        rules = {
            (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
            for rule in create_app(service.resources).url_map.iter_rules()
            for method in (rule.methods or set()) & METHODS
        }
        assert rules == documented

        # Over HTTP, without the app's own map: each documented operation reaches a route
        # (not "no such route", not 405), and each method it does not document is a 405.
        unreached, unrefused = [], []
        for method, path in sorted(documented):
            response = await service.client.request(method, concrete(path, PATH_VALUES))
            body = response.json() if "json" in response.headers.get("Content-Type", "") else {}
            message = body.get("error", {}).get("message") if isinstance(body, dict) else None
            if response.status_code == 405 or message == "no such route":
                unreached.append(f"{method} {path}: {response.status_code}")
        for path in {path for _, path in documented}:
            for method in METHODS - {m for m, p in documented if p == path}:
                response = await service.client.request(method, concrete(path, PATH_VALUES))
                if response.status_code != 405:
                    unrefused.append(f"{method} {path}: {response.status_code}")
        missing = await service.client.get("/api/not-a-route")
    assert unreached == []
    assert unrefused == []
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no such route"


def test_a_route_without_a_description_stops_the_document_from_being_built() -> None:
    app = Quart(__name__, static_folder=None)

    @app.get("/api/undescribed")
    @requires("history")
    async def undescribed() -> str:
        return "?"

    with pytest.raises(Undocumented, match="/api/undescribed"):
        openapi_document(app)


@pytest.mark.parametrize("model", [ProcessBody, ErrorEnvelope, Health])
async def test_the_schemas_are_the_models_the_routes_use(
    tmp_path: Path, model: type[BaseModel]
) -> None:
    async with running_service(tmp_path, None) as service:
        document = await published(service.client)
    in_document = document["components"]["schemas"][model.__name__]
    own = model.model_json_schema(ref_template="#/components/schemas/{model}")
    own.pop("$defs", None)
    assert in_document == own


async def test_the_request_body_schema_refuses_what_the_route_refuses(tmp_path: Path) -> None:
    """The published body schema forbids extra fields because the route does."""
    async with running_service(tmp_path, None) as service:
        document = await published(service.client)
        response = await service.client.post(
            "/api/process", json={"message": "Hi?", "message_id": "m-1", "colour": "red"}
        )
    assert document["components"]["schemas"]["ProcessBody"]["additionalProperties"] is False
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "colour"
