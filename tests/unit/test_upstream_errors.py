"""Provider exceptions map to stable codes, and the provider's text never reaches the message."""

from __future__ import annotations

import email.utils
import time

import httpx2
import openai
import pytest

from service.llm.upstream_errors import map_openai_error, retry_after_s

SECRET = "upstream-secret-detail"
REQUEST = httpx2.Request("POST", "http://upstream/v1/chat/completions")


def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    response = httpx2.Response(
        status, request=REQUEST, headers=headers, json={"error": {"message": SECRET}}
    )
    client = openai.AsyncOpenAI(api_key="k", base_url="http://upstream/v1")
    return client._make_status_error_from_response(response)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (openai.APITimeoutError(request=REQUEST), "upstream_timeout"),
        (openai.APIConnectionError(message=SECRET, request=REQUEST), "upstream_unavailable"),
        (status_error(429), "upstream_rate_limited"),
        (status_error(401), "upstream_auth_failed"),
        (status_error(403), "upstream_auth_failed"),
        (status_error(408), "upstream_timeout"),
        (status_error(500), "upstream_unavailable"),
        (status_error(503), "upstream_unavailable"),
        (status_error(400), "upstream_rejected"),
        (status_error(404), "upstream_rejected"),
        (openai.OpenAIError(SECRET), "upstream_bad_response"),
    ],
)
def test_each_provider_failure_has_a_stable_code_and_a_safe_message(
    exc: openai.OpenAIError, code: str
) -> None:
    error = map_openai_error(exc)
    assert error.code == code
    assert SECRET not in error.public_message
    assert SECRET not in str(error)


def test_a_rate_limit_carries_the_wait_the_provider_asked_for() -> None:
    error = map_openai_error(status_error(429, {"Retry-After": "2"}))
    assert (error.code, error.retryable, error.retry_after_s) == ("upstream_rate_limited", True, 2)
    error = map_openai_error(status_error(503, {"retry-after-ms": "1500"}))
    assert (error.code, error.retryable, error.retry_after_s) == ("upstream_unavailable", True, 1.5)
    assert map_openai_error(status_error(429)).retry_after_s is None
    assert map_openai_error(status_error(401)).retryable is False


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "40", "retry-after": "9"}, 0.04),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after-ms": "NaN", "retry-after": "inf"}, None),
        ({"retry-after-ms": "inf", "retry-after": "2"}, 2.0),
        ({}, None),
    ],
)
def test_retry_after_headers_are_read_in_every_form(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after_s(headers) == seconds


def test_a_retry_after_date_in_the_future_counts_from_now() -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    wait = retry_after_s({"retry-after": future})
    assert wait is not None
    assert 28 <= wait <= 30
