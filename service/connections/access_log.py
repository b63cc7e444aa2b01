"""One access-log line per request, written when the response has ended (for a stream, when
its last event went out or its client left), and the request counter.

It is ASGI middleware around the app. Each request gets an id (a sane incoming X-Request-Id,
or a new one), returned in the X-Request-Id header and attached to every log line written
while the request runs:

    app.asgi_app = AccessLog(app.asgi_app)
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

import trio
from hypercorn.typing import ASGIReceiveEvent, ASGISendEvent

from ..telemetry.metrics import METRICS
from ..telemetry.request import CURRENT_REQUEST, RequestRecord
from .record import current_connection

log = logging.getLogger("service.access")

REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
KNOWN_ROUTES = frozenset({"/api/process", "/admin/ensemble", "/metrics", "/healthz", "/readyz"})


class AccessLog:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = incoming.decode() if _SANE_ID.fullmatch(incoming) else secrets.token_hex(8)
        record = RequestRecord(request_id=request_id)
        CURRENT_REQUEST.set(record)
        connection = current_connection()
        if connection is not None:
            # Named when the connection itself fails or is closed on a stuck reader.
            connection.request_id = request_id
        started = trio.current_time()
        status = 0
        disconnected = False
        completed = False

        async def receive_watching() -> ASGIReceiveEvent:
            nonlocal disconnected
            message: ASGIReceiveEvent = await receive()
            if message["type"] == "http.disconnect" and not completed:
                disconnected = True
            return message

        async def send_with_id(message: ASGISendEvent) -> None:
            nonlocal status, completed
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
                # Counted before the last bytes go out: a client that reads /metrics next
                # must find its request there.
                count_request()
            await send(message)

        counted = False
        path = scope["path"]

        def count_request() -> None:
            nonlocal counted
            if not counted:
                counted = True
                route = path if path in KNOWN_ROUTES else "other"
                METRICS.requests.labels(route=route, status=str(status or 0)).inc()

        try:
            await self.app(scope, receive_watching, send_with_id)
        finally:
            count_request()
            duration_ms = round((trio.current_time() - started) * 1000, 1)
            outcome = record.outcome or ("disconnected" if disconnected else "complete")
            log.info(
                "%s %s %d %.1fms outcome=%s disconnected=%s",
                scope["method"],
                # Decoded from %-escapes: escape control characters so no one forges a line.
                path.encode("unicode_escape").decode("ascii"),
                status,
                duration_ms,
                outcome,
                str(disconnected or outcome == "disconnected").lower(),
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                    "outcome": outcome,
                    "disconnected": disconnected or outcome == "disconnected",
                    "trace_id": record.trace_id or None,
                    "user": record.user or None,
                    "tenant": record.tenant or None,
                },
            )
