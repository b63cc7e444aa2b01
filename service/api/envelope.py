"""The error envelope (`errors.error_body`) as an HTTP response: the app's errors, Werkzeug's."""

from __future__ import annotations

import json

from quart import Response
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


def error_response(
    error: ServiceError, headers: dict[str, str] | None = None, *, status: int | None = None
) -> Response:
    return Response(
        json.dumps(error_body(error)),
        status=status or error.status,
        headers=headers,
        content_type="application/json",
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
