"""HTTP/1.1, and only HTTP/1.1: Hypercorn's h11 protocol with the changes this service needs.

- HTTP/2 is refused. Hypercorn's HTTP/2 path keeps a stream's send buffer after its client
  leaves, so the response's last write waits forever (a task and a connection per request
  until shutdown), and flow control can stall a write with no bound. A client that opens
  with the HTTP/2 preface gets a GOAWAY with HTTP_1_1_REQUIRED (RFC 9113 7) and the
  connection is closed; an `Upgrade: h2c` is ignored and the request answered in HTTP/1.1,
  as RFC 9110 7.8 allows.
- Reading resumes once the response has started. h11 stops reading after a request that
  proposed an upgrade until the server says yes or no, and Hypercorn waited for the whole
  response: a client that hung up during a stream went unnoticed and its agents kept
  running. The response's start is the "no", so reading (and the hang-up) comes back then.
- A request with both Content-Length and Transfer-Encoding is refused (400) and the
  connection closed, the RFC 9112 6.1 answer to a request-smuggling shape.
- The errors the parser answers itself (a bad chunk, a NUL in a header, no Host, 431 for
  huge headers, ...) carry the JSON error envelope, not an empty body, and nothing the app
  sends for that request afterwards is written into them.
"""

from __future__ import annotations

import json

import h2.config
import h2.connection
import h2.errors
import h11
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import Response
from hypercorn.protocol.h11 import H11Protocol

from ..errors import (
    HeadersTooLarge,
    MalformedRequest,
    RequestError,
    TransferCodingNotSupported,
    error_body,
)

_PARSER_ERRORS: dict[int, type[RequestError]] = {
    431: HeadersTooLarge,
    501: TransferCodingNotSupported,
}


class _Refused(Exception):
    """The request was answered (or the connection refused) before any app saw it."""


def _http2_refusal() -> bytes:
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    connection.initiate_connection()
    connection.close_connection(
        error_code=h2.errors.ErrorCodes.HTTP_1_1_REQUIRED,
        additional_data=b"this server speaks HTTP/1.1 only",
    )
    return connection.data_to_send()


HTTP2_REFUSAL = _http2_refusal()


class Http1Protocol(H11Protocol):
    async def handle(self, event: Event) -> None:
        try:
            await super().handle(event)
        except _Refused:
            await self.send(Closed())

    # Set once the parser has answered a request itself: the app, which may have started on
    # the same request, must not write into that answer, nor close the connection under it
    # (the parser closes it once its answer is out).
    answered_by_parser = False

    async def stream_send(self, event: StreamEvent) -> None:
        if self.answered_by_parser:
            return
        await super().stream_send(event)
        if (
            isinstance(event, Response)
            and event.status_code >= 200
            and isinstance(self.connection, h11.Connection)
            and self.connection.their_state is h11.DONE
        ):
            # A proposed upgrade paused reading; the response just declined it.
            await self.can_read.set()

    async def _check_protocol(self, event: h11.Request) -> None:
        if event.method == b"PRI" and event.target == b"*" and event.http_version == b"2.0":
            await self.send(RawData(data=HTTP2_REFUSAL))
            raise _Refused
        names = {name for name, _ in event.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            await self._send_refusal(
                MalformedRequest(
                    "Content-Length and Transfer-Encoding must not both be sent",
                    field="Transfer-Encoding",
                )
            )
            raise _Refused
        # Anything else, an `Upgrade: h2c` included, is served as HTTP/1.1.

    async def _send_error_response(self, status_code: int) -> None:
        error = _PARSER_ERRORS.get(status_code, MalformedRequest)()
        await self._send_refusal(error, status_code)

    async def _send_refusal(self, error: RequestError, status_code: int | None = None) -> None:
        self.answered_by_parser = True
        body = json.dumps(error_body(error)).encode()
        await self._send_h11_event(
            h11.Response(
                status_code=status_code or error.status,
                headers=[
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    # As every answer of the app has (api/envelope.py NO_SNIFF).
                    (b"x-content-type-options", b"nosniff"),
                    *self.config.response_headers("h11"),
                ],
            )
        )
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())
