"""A log line is one line, whatever a client put in the values it carries."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from service.logs import JsonFormatter, TextFormatter, escape_controls

FORGED = "m-1\n12:00:00 INFO    service.access: GET /admin 200"


def record(message: str = "agent %s failed", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("service.pipeline", logging.WARNING, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


@pytest.mark.parametrize("field", ["message_id", "conversation_id", "agent", "request_id"])
def test_a_context_value_with_a_newline_cannot_write_a_line_of_its_own(field: str) -> None:
    line = TextFormatter().format(record("stream ended", **{field: FORGED}))
    assert "\n" not in line
    assert f"{field}=m-1\\n12:00:00 INFO" in line


def test_message_arguments_are_escaped_too() -> None:
    line = TextFormatter().format(record("agent %s failed", "a\r\nb\x1b[2J\u2028c"))
    assert line.endswith("agent a\\r\\nb\\x1b[2J\\u2028c failed")


def test_a_traceback_follows_on_marked_lines_that_cannot_pass_for_records() -> None:
    try:
        raise ValueError(FORGED)
    except ValueError:
        made = record("boom")
        made.exc_info = sys.exc_info()
    lines = TextFormatter().format(made).split("\n")
    assert lines[0].endswith("service.pipeline: boom")
    assert all(line.startswith("  | ") for line in lines[1:])
    assert "  | 12:00:00 INFO    service.access: GET /admin 200" in lines


def test_json_lines_keep_the_value_exact() -> None:
    line = JsonFormatter().format(record("stream ended", message_id=FORGED))
    assert "\n" not in line
    assert json.loads(line)["message_id"] == FORGED


def test_escape_controls_leaves_ordinary_text_alone() -> None:
    assert (
        escape_controls("héllo wörld, ünïcode 🙂 and\ttab") == "héllo wörld, ünïcode 🙂 and\\ttab"
    )
