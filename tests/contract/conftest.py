"""Helpers of the contract tests: the documented operations, and a check of a real response
against the schema the published document gives it (not against the service's own models,
so what a client reads is what is checked)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
from jsonschema import Draft202012Validator

# Each documented operation as (method, path template, operation object).
Operation = tuple[str, str, dict[str, Any]]


def operations(document: dict[str, Any]) -> Iterator[Operation]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


async def published(client: httpx.AsyncClient) -> dict[str, Any]:
    """The document the server publishes at /openapi.json."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def concrete(template: str, values: dict[str, str]) -> str:
    """A documented path with each `{parameter}` given its value from `values`."""

    def value(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"no value for the path parameter {match.group(1)}"
        return values[match.group(1)]

    return re.sub(r"\{(\w+)\}", value, template)


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """Checks against `schema`, whose `$ref`s point into the document's components."""
    return Draft202012Validator({**schema, "components": document["components"]})


def schema_problems(document: dict[str, Any], schema: dict[str, Any], value: object) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator(document, schema).iter_errors(value)
    ]


def component(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def response_problems(
    document: dict[str, Any], method: str, template: str, response: httpx.Response
) -> list[str]:
    """Why `response` does not match what the document says `method template` answers."""
    operation = document["paths"][template][method.lower()]
    documented = operation["responses"].get(str(response.status_code))
    if documented is None:
        return [f"status {response.status_code} is not documented"]
    media = response.headers.get("Content-Type", "").split(";")[0]
    content = documented.get("content")
    if content is None:
        return [] if not response.content else [f"a body where none is documented: {media}"]
    if media not in content:
        return [f"{media} is not documented (only {sorted(content)})"]
    if media != "application/json":
        return []
    return schema_problems(document, content[media]["schema"], response.json())
