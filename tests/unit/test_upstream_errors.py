"""Provider exceptions map to stable codes, and the provider's text never reaches the message."""

from __future__ import annotations

import httpx2
import openai
import pytest

from service.llm.upstream_errors import map_openai_error

SECRET = "upstream-secret-detail"
REQUEST = httpx2.Request("POST", "http://upstream/v1/chat/completions")


def status_error(status: int) -> openai.APIStatusError:
    response = httpx2.Response(status, request=REQUEST, json={"error": {"message": SECRET}})
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
