"""Map the openai SDK's exceptions to the service's upstream errors, once, at the boundary.

The provider's own text stays in the cause chain (for the logs); the client sees only the
public message of the mapped error.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

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
        return UpstreamRateLimited(retry_after_s=retry_after_s(exc.response.headers))
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamAuthFailed()
    if isinstance(exc, openai.APIResponseValidationError):
        return UpstreamBadResponse()
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 408:
            return UpstreamTimeout()
        if exc.status_code >= 500:
            return UpstreamUnavailable(retry_after_s=retry_after_s(exc.response.headers))
        return UpstreamRejected()
    return UpstreamBadResponse()


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The wait a provider asked for: `retry-after-ms`, `Retry-After` seconds or an HTTP date.

    None when there is no such header or it cannot be read (a NaN or infinity included).
    """
    milliseconds = _finite(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return max(milliseconds / 1000, 0.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _finite(text: str | None) -> float | None:
    try:
        number = float(text) if text is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None
