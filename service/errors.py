"""The layered error types: one hierarchy, a stable `code` per failure, a public message.

Every error the service reports to a client is a `ServiceError`. Before a stream starts it
becomes an HTTP status with the JSON envelope; after, an `error` event; the code is the same.
`public_message` is safe to show a client; the cause chain (`raise ... from exc`) keeps the
private detail for the logs only.

    try:
        ...
    except openai.RateLimitError as exc:
        raise UpstreamRateLimited() from exc
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class ServiceError(Exception):
    """Base of every error with a client-facing code."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "internal error"

    def __init__(self, public_message: str | None = None, *, field: str | None = None) -> None:
        self.public_message = public_message or self.default_message
        self.field = field
        super().__init__(self.public_message)


def error_body(error: ServiceError) -> dict[str, Any]:
    """The one error envelope: `{"error": {"code": ..., "message": ..., "field": ...}}`."""
    return {"error": {"code": error.code, "message": error.public_message, "field": error.field}}


# --- request layer -----------------------------------------------------------------------


class RequestError(ServiceError):
    """The client's request cannot be served as sent."""

    code = "invalid_request"
    status = 400
    default_message = "invalid request"


class InvalidRequest(RequestError):
    pass


class PayloadTooLarge(RequestError):
    code = "payload_too_large"
    status = 413
    default_message = "request body is too large"


class UnsupportedMediaType(RequestError):
    code = "unsupported_media_type"
    status = 415
    default_message = "Content-Type must be application/json"


class NotFound(RequestError):
    code = "not_found"
    status = 404
    default_message = "no such route"


class EnsembleNotFound(NotFound):
    code = "ensemble_not_found"
    default_message = "no such ensemble"


class MethodNotAllowed(RequestError):
    code = "method_not_allowed"
    status = 405
    default_message = "method not allowed on this route"


class MalformedRequest(RequestError):
    """Refused by the HTTP/1.1 parser, before any route saw it; the connection is closed."""

    default_message = "the request is not valid HTTP/1.1"


class HeadersTooLarge(RequestError):
    code = "headers_too_large"
    status = 431
    default_message = "the request line or headers are too large"


class TransferCodingNotSupported(RequestError):
    # RFC 9112 6.1: an unknown transfer coding is answered 501, so the status is not ours.
    code = "transfer_coding_not_supported"
    status = 501
    default_message = "only the chunked transfer coding is supported"


class NotAuthenticated(RequestError):
    code = "unauthenticated"
    status = 401
    default_message = "a valid API key or token is needed (Authorization: Bearer ...)"


class NotAllowed(RequestError):
    code = "forbidden"
    status = 403
    default_message = "this credential may not do this"


class NotRunningHere(RequestError):
    code = "not_running_here"
    status = 409
    default_message = "this message is not running on this instance (finished, or elsewhere)"


class Conflict(RequestError):
    """What was asked does not fit the state of what it names (an evaluation done, to
    resume)."""

    code = "conflict"
    status = 409
    default_message = "not in a state that allows this"


class StorageDisabled(RequestError):
    code = "storage_disabled"
    status = 404
    default_message = "nothing is stored on this server (DATABASE_URL=none)"


# --- upstream layer (mapped once, at the llm/ boundary) ------------------------------------


class ModelNotFound(NotFound):
    """An OpenAI client named a model (an ensemble) that is not loaded."""

    code = "model_not_found"
    default_message = "no such model"


class RateLimited(RequestError):
    code = "rate_limited"
    status = 429
    default_message = "a rate limit was reached"

    def __init__(
        self, limit: str, retry_after_s: float, headers: dict[str, str] | None = None
    ) -> None:
        self.limit = limit
        self.retry_after = max(1, math.ceil(retry_after_s))
        # Retry-After, exact in whole seconds (rounded up), and the RateLimit fields.
        self.headers = {"Retry-After": str(self.retry_after), **(headers or {})}
        super().__init__(f"{limit} reached; retry in {self.retry_after} s")


class UpstreamError(ServiceError):
    """An LLM provider call failed. Never carries the provider's own text in its message.

    `retryable` says whether the same call may succeed if sent again; `retry_after_s` is the
    wait the provider asked for (a Retry-After header), when it asked.
    """

    code = "upstream_error"
    status = 502
    default_message = "the language model call failed"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        public_message: str | None = None,
        *,
        field: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(public_message, field=field)
        self.retry_after_s = retry_after_s


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"
    status = 504
    default_message = "the language model did not answer in time"
    retryable = True


class UpstreamRateLimited(UpstreamError):
    code = "upstream_rate_limited"
    status = 503
    default_message = "the language model provider is rate limiting requests"
    retryable = True


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"
    status = 503
    default_message = "the language model provider is unavailable"
    retryable = True


class UpstreamBadResponse(UpstreamError):
    code = "upstream_bad_response"
    default_message = "the language model provider sent a response that could not be used"


class UpstreamAuthFailed(UpstreamError):
    code = "upstream_auth_failed"
    default_message = "the service could not authenticate with the language model provider"


class UpstreamRejected(UpstreamError):
    code = "upstream_rejected"
    default_message = "the language model provider rejected the request"


# --- pipeline layer ----------------------------------------------------------------------


class PipelineError(ServiceError):
    code = "pipeline_error"


class NoAgentSucceeded(PipelineError):
    code = "no_agent_succeeded"
    status = 502
    default_message = "no agent produced an answer"


class QuorumNotMet(PipelineError):
    code = "quorum_not_met"
    status = 502
    default_message = "too few agents produced an answer"


class AgentCut(PipelineError):
    """An agent still working when the summary started without it (straggler grace)."""

    code = "agent_cut"
    status = 504
    default_message = "the summary started without this agent's answer"


class DeadlineExceeded(PipelineError):
    code = "deadline_exceeded"
    status = 504
    default_message = "the request did not finish within its deadline"


# --- process layer -----------------------------------------------------------------------


class RunCancelled(ServiceError):
    """The run was cancelled because the client that started it left, or because its user
    stopped it (the `error` event that those following it, and its record, end with)."""

    code = "cancelled"
    status = 499
    default_message = "the client that sent this message disconnected, which cancelled it"
    # POST /api/messages/{id}/cancel: nobody left, the user asked.
    stopped_message: ClassVar[str] = "stopped by the user before it finished"


class StorageUnavailableError(ServiceError):
    code = "storage_unavailable"
    status = 503
    default_message = "the conversation store is not reachable; retry shortly"


class RunInterrupted(ServiceError):
    code = "interrupted"
    status = 503
    default_message = (
        "the run stopped with the server that ran it, before it finished; send the question "
        "again as a new message"
    )


class ShuttingDown(ServiceError):
    code = "shutting_down"
    status = 503
    default_message = "the server is shutting down; retry on another instance"


class LimiterUnavailable(ServiceError):
    code = "rate_limiter_unavailable"
    status = 503
    default_message = "the rate limiter is not reachable; retry shortly"
