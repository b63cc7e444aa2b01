"""Validation of the POST /api/process body: each problem names its field."""

from __future__ import annotations

import json

import pytest

from service.api.contract.process_request import ProcessRequest, parse_process_request
from service.errors import InvalidRequest


def parse(body: object, max_chars: int = 100) -> ProcessRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_process_request(raw, max_message_chars=max_chars)


def test_a_valid_body_becomes_a_pipeline_request() -> None:
    parsed = parse({"message": "hi", "message_id": "m", "conversation_id": "c"})
    request = parsed.pipeline
    assert (request.message, request.message_id, request.conversation_id) == ("hi", "m", "c")
    assert parsed.on_disconnect == "cancel"


def test_on_disconnect_may_ask_the_run_to_continue() -> None:
    parsed = parse({"message": "hi", "message_id": "m", "on_disconnect": "continue"})
    assert parsed.on_disconnect == "continue"


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (b"{not json", None, "the body is not valid JSON"),
        (b"\xff\xfe", None, "the body is not valid JSON"),
        ([1, 2], None, "the body must be a JSON object"),
        ({"message_id": "m"}, "message", "message: is required"),
        ({"message": "hi"}, "message_id", "message_id: is required"),
        ({"message": 5, "message_id": "m"}, "message", "message: must be a string"),
        ({"message": "   \n", "message_id": "m"}, "message", "message: must not be blank"),
        ({"message": "x" * 101, "message_id": "m"}, "message", "at most 100 characters"),
        ({"message": "hi", "message_id": ""}, "message_id", "message_id: must not be empty"),
        ({"message": "hi", "message_id": "m" * 129}, "message_id", "at most 128 characters"),
        ({"message": "hi", "message_id": 12}, "message_id", "must be a string"),
        ({"message": "hi", "message_id": "m", "conversation_id": ""}, "conversation_id", "empty"),
        ({"message": "hi", "message_id": "m", "stream": True}, "stream", "not a known field"),
        (b'{"message": "a \\ud800", "message_id": "m"}', "message", "valid Unicode"),
        (b"[" * 100_000 + b"]" * 100_000, None, "nested too deeply"),
        ({"message": "hi", "message_id": "m", "on_disconnect": "stay"}, "on_disconnect", "cancel"),
    ],
)
def test_each_problem_is_a_400_naming_the_field(body: object, field: str | None, says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(body)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_request"
    assert caught.value.field == field
    assert says in caught.value.public_message


def test_the_message_limit_is_inclusive() -> None:
    assert parse({"message": "x" * 100, "message_id": "m"}) is not None
