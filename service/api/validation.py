"""A pydantic refusal as the one error the client sees: the first problem, naming its field.

except ValidationError as exc:
    raise first_problem(exc) from exc
"""

from __future__ import annotations

from pydantic import ValidationError

from ..errors import InvalidRequest

_MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most 128 characters",
    "extra_forbidden": "is not a known field",
}


def first_problem(exc: ValidationError) -> InvalidRequest:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or None
    problem = _MESSAGES.get(error["type"], error["msg"])
    return InvalidRequest(f"{field}: {problem}" if field else problem, field=field)
