"""Map the openai SDK's exceptions to the service's upstream errors, once, at the boundary.

The provider's own text stays in the cause chain (for the logs); the client sees only the
public message of the mapped error.
"""

from __future__ import annotations

import openai

from ..errors import (
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)


def map_openai_error(exc: openai.OpenAIError) -> UpstreamError:
    """The service error for `exc`; raise it `from exc` to keep the cause."""
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout()
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamUnavailable()
    if isinstance(exc, openai.RateLimitError):
        return UpstreamRateLimited()
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamAuthFailed()
    if isinstance(exc, openai.APIResponseValidationError):
        return UpstreamBadResponse()
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 408:
            return UpstreamTimeout()
        if exc.status_code >= 500:
            return UpstreamUnavailable()
        return UpstreamRejected()
    return UpstreamBadResponse()
