"""Werkzeug's HTTP errors in the service's envelope, with their own status kept."""

from __future__ import annotations

import json

from quart import Quart
from werkzeug.exceptions import MethodNotAllowed, RequestEntityTooLarge, RequestTimeout

from service.api.envelope import http_exception_response


async def body_of(exc: Exception) -> tuple[int, dict[str, object], dict[str, str]]:
    async with Quart(__name__).app_context():
        response = http_exception_response(exc)  # type: ignore[arg-type]
        return response.status_code, json.loads(await response.get_data()), dict(response.headers)


async def test_a_client_error_without_its_own_code_keeps_its_status() -> None:
    status, body, _ = await body_of(RequestTimeout())
    assert status == 408
    assert body["error"]["code"] == "invalid_request"  # type: ignore[index]


async def test_405_keeps_the_allow_header_and_413_closes_the_connection() -> None:
    status, body, headers = await body_of(MethodNotAllowed(valid_methods=["POST"]))
    assert (status, headers["Allow"]) == (405, "POST")
    assert body["error"] == {  # type: ignore[comparison-overlap]
        "code": "method_not_allowed",
        "message": "method not allowed on this route",
        "field": None,
    }
    status, _, headers = await body_of(RequestEntityTooLarge())
    assert (status, headers["Connection"]) == (413, "close")
