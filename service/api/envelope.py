"""The error envelope (`errors.error_body`) as an HTTP response: the app's errors, Werkzeug's.

Under /v1/ (the OpenAI-compatible routes) the same error takes OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, so the SDKs raise their own classes.
"""

from __future__ import annotations

import json

from quart import Response, has_request_context, request
from werkzeug.exceptions import HTTPException

from ..errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
    error_body,
)

_BY_STATUS: dict[int, type[ServiceError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


# Sent with every answer (app.py; the parser's refusals in connections/http1.py too).
NO_SNIFF = ("X-Content-Type-Options", "nosniff")

OPENAI_PREFIX = "/v1/"
# OpenAI's error types by status (the SDKs choose their exception by status alone).
_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


def openai_error_body(error: ServiceError, status: int) -> dict[str, object]:
    kind = _OPENAI_TYPES.get(status) or (
        "invalid_request_error" if status < 500 else "server_error"
    )
    return {
        "error": {
            "message": error.public_message,
            "type": kind,
            "param": error.field,
            "code": error.code,
        }
    }


def error_response(
    error: ServiceError, headers: dict[str, str] | None = None, *, status: int | None = None
) -> Response:
    status = status or error.status
    openai = has_request_context() and request.path.startswith(OPENAI_PREFIX)
    body = openai_error_body(error, status) if openai else error_body(error)
    return Response(
        json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def http_exception_response(exc: HTTPException) -> Response:
    """Werkzeug's routing and body-size errors, in the service's own envelope."""
    status = exc.code or 500
    error_class = _BY_STATUS.get(status)
    if error_class is not None:
        error = error_class()
    elif status < 500:
        # Any other client error Werkzeug raises (408 body timeout, ...): keep its status.
        error = InvalidRequest(exc.description)
    else:
        error = ServiceError()
        status = error.status
    # Keep what the exception says about the route, such as `Allow` on a 405.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    if isinstance(error, PayloadTooLarge):
        # The rest of the body is never read, so the connection cannot carry another request.
        headers["Connection"] = "close"
    return error_response(error, headers, status=status)
