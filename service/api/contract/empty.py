"""A 204: no body, so neither a body type nor a length (RFC 9110 8.3 and 8.6)."""

from __future__ import annotations

from quart import Response


def no_content(headers: dict[str, str] | None = None) -> Response:
    response = Response("", status=204, headers=headers)
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    return response
