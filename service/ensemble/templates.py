"""Prompts are Jinja templates with named variables, checked when the ensemble is loaded.

An unknown variable, a typo in an attribute or a syntax error is a load error naming the
line, never a crash in the middle of a request:

    check_template("Today is {{ date }}. {{ mesage }}", AGENT_VARIABLES)
    # ValueError: unknown variable 'mesage' (known: agent, date, message)
    render("Today is {{ date }}.", date="2026-11-23")   # 'Today is 2026-11-23.'

Agents see `message` (the user's message), `agent` (their own name) and `date` (today, UTC,
ISO format). The summarizer sees `message`, `summarizer`, `date`, `answers` (each with `name`,
`text` and `truncated`) and `missing` (the names of agents without an answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment

AGENT_VARIABLES = frozenset({"message", "agent", "date"})
SUMMARIZER_VARIABLES = frozenset({"message", "summarizer", "date", "answers", "missing"})

DEFAULT_AGENT_PROMPT = "{{ message }}"
DEFAULT_SUMMARY_PROMPT = """\
The user asked:
<question>
{{ message }}
</question>

Answers from {{ answers | length }} agent(s):
{%- for answer in answers %}

<answer from="{{ answer.name }}">
{{ answer.text }}
</answer>
{%- endfor %}
{%- if missing %}

No answer arrived from: {{ missing | join(", ") }}. Combine the answers above.
{%- endif %}"""

# Operators write these templates, but a sandbox costs nothing and keeps a prompt a prompt.
# Jinja's own whitespace rules (trim with `{%-` and `-%}`), as its documentation describes.
_ENVIRONMENT = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)


@dataclass(frozen=True, slots=True)
class AnswerView:
    """One agent's answer as a summarizer template sees it."""

    name: str
    text: str
    truncated: bool = False


_SAMPLES: Mapping[str, Any] = {
    "message": "What is the question?",
    "agent": "agent",
    "summarizer": "summarizer",
    "date": "2000-01-01",
    "answers": [AnswerView("a", "An answer."), AnswerView("b", "Another.", truncated=True)],
    "missing": ["c"],
}


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    return _ENVIRONMENT.from_string(source)


def check_template(source: str, variables: frozenset[str]) -> None:
    """Raise ValueError, naming the line, if `source` would not render with `variables`."""
    try:
        # Finding the variables compiles the template, which also checks its filters.
        declared = meta.find_undeclared_variables(_ENVIRONMENT.parse(source))
    except TemplateSyntaxError as exc:
        raise ValueError(f"template line {exc.lineno}: {exc.message}") from exc
    unknown = sorted(declared - variables)
    if unknown:
        known = ", ".join(sorted(variables))
        names = ", ".join(repr(name) for name in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(f"unknown variable{plural} {names} (known: {known})")
    # Filters are only found when compiling, attributes (`answer.nmae`) when rendering.
    try:
        _compiled(source).render({name: _SAMPLES[name] for name in variables})
    except TemplateSyntaxError as exc:
        raise ValueError(f"template line {exc.lineno}: {exc.message}") from exc
    except (UndefinedError, TypeError, ValueError) as exc:
        raise ValueError(f"the template does not render: {exc}") from exc


def render(source: str, **values: Any) -> str:
    """`source` rendered with `values`; the template was checked when it was loaded."""
    return _compiled(source).render(values).strip()
