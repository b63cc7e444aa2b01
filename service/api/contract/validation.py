"""A pydantic refusal as the one error the client sees: the first problem, naming its field.

except ValidationError as exc:
    raise first_problem(exc) from exc
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, ValidationError

from ...auth.keys import DURATION_PATTERN
from ...errors import InvalidRequest

# Every id the API accepts (`message_id`, `conversation_id`, the ids in a path, a `user` or
# `tenant`): printable ASCII without the space and without `/`, 1 to MAX_ID characters, and
# not `.` or `..`. Such an id is safe in a response header (no CR, LF or NUL), names one
# path segment (an encoded slash never routes; a client would resolve `.` and `..` away),
# reads the same in a log line, and is text both databases store as is.
MAX_ID = 128
# One character that is not a dot, or a dot and one that is not, or two dots and any; then
# any. (No look-ahead: pydantic's regular expressions, and many clients', have none.)
ID_PATTERN = (
    "^(?:\\.?[\\x21-\\x2d\\x30-\\x7e]|\\.\\.[\\x21-\\x2e\\x30-\\x7e])[\\x21-\\x2e\\x30-\\x7e]*$"
)
ID_RULE = (
    f"must be 1 to {MAX_ID} printable ASCII characters, without spaces or '/', and not '.' or '..'"
)
ClientId = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN)]
_ID = re.compile(ID_PATTERN)
# What a response header may carry: printable ASCII and the space, nothing else (no CR, LF
# or NUL to end it early or inject another; no byte a client could read as another encoding).
_HEADER_VALUE = re.compile("[\\x20-\\x7e]*")
# Text a database stores as is: PostgreSQL refuses the NUL character in text, SQLite keeps
# it, so it is refused on both (no input means one thing on one database, another on the other).
NO_NUL = "^[^\\u0000]*$"
NO_NUL_RULE = "must not contain the NUL character (U+0000)"

# Holds a character that is not white space (the characters of Python's str.isspace(),
# spelled out so that every regular expression engine, pydantic's or a client's, reads it
# alike), and no NUL anywhere (NO_NUL).
NOT_BLANK = (
    "^[^\\u0000]*"
    "[^\\u0000\\t\\n\\u000b\\f\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000]"
    "[^\\u0000]*$"
)
# A page's end: the last conversation's `updated_at` in microseconds since the epoch, a dot,
# and its id. Any such pair is a position in the list, so no well-formed cursor is refused.
CURSOR_PATTERN = r"^[0-9]{1,16}\.[^\u0000]{1,128}$"
# What a value that does not match each pattern is told.
_PATTERN_MESSAGES = {
    DURATION_PATTERN: "expected a number and a unit, e.g. 30d, 12h, 90m",
    NOT_BLANK: "must not be blank",
    CURSOR_PATTERN: "not a cursor this server gave",
    ID_PATTERN: ID_RULE,
    NO_NUL: NO_NUL_RULE,
}

_MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode text",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most 128 characters",
    "extra_forbidden": "is not a known field",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
}


def checked_id(value: str, field: str) -> str:
    """`value` if it is an id (ID_PATTERN); else the 400 naming `field`."""
    if not (len(value) <= MAX_ID and _ID.fullmatch(value)):
        raise InvalidRequest(f"{field}: {ID_RULE}", field=field)
    return value


def header_safe(value: str) -> bool:
    return _HEADER_VALUE.fullmatch(value) is not None


def checked_text(value: str, field: str) -> str:
    """`value` if both databases store it as is; else the 400 naming `field`."""
    if "\x00" in value:
        raise InvalidRequest(f"{field}: {NO_NUL_RULE}", field=field)
    return value


def first_problem(exc: ValidationError) -> InvalidRequest:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or None
    problem = _MESSAGES.get(error["type"], error["msg"])
    context = error.get("ctx", {})
    if error["type"] == "value_error":
        problem = str(context.get("error", problem))
    elif error["type"] == "string_pattern_mismatch":
        problem = _PATTERN_MESSAGES.get(str(context.get("pattern")), problem)
    elif error["type"] == "greater_than_equal":
        problem = f"must be at least {context['ge']}"
    elif error["type"] == "less_than_equal":
        problem = f"must be at most {context['le']}"
    return InvalidRequest(f"{field}: {problem}" if field else problem, field=field)
