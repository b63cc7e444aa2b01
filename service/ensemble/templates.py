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

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

AGENT_VARIABLES = frozenset({"message", "agent", "date", "history"})
SUMMARIZER_VARIABLES = frozenset({"message", "summarizer", "date", "answers", "missing", "history"})

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

# Operators write these templates, but a sandbox costs nothing and keeps a prompt a prompt;
# an immutable one keeps a template from changing the values other templates see.
# Jinja's own whitespace rules (trim with `{%-` and `-%}`), as its documentation describes.
_ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)


@dataclass(frozen=True, slots=True)
class AnswerView:
    """One agent's answer as a summarizer template sees it."""

    name: str
    text: str
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class TurnView:
    """One earlier message of the conversation as a template sees it (`history`, oldest
    first): `role` is "user" or "assistant"."""

    role: str
    text: str


class TemplateFailed(Exception):
    """A checked template still failed with a request's values (a path the checks missed)."""


def _samples() -> list[dict[str, Any]]:
    """Values to render a template with at load: fresh each time, and covering the shapes
    a request can bring (one answer or several, nothing missing or some)."""
    common = {"message": "What is the question?", "agent": "agent", "summarizer": "s"}
    common["date"] = "2000-01-01"
    one = [AnswerView("a", "An answer.")]
    several = [AnswerView("a", "An answer."), AnswerView("b", "Another.", truncated=True)]
    history = [TurnView("user", "An earlier question?"), TurnView("assistant", "Its answer.")]
    return [
        {**common, "answers": several, "missing": ["c"], "history": []},
        {**common, "answers": one, "missing": [], "history": history},
        {**common, "answers": several, "missing": [], "history": history},
        {**common, "answers": one, "missing": ["b", "c"], "history": []},
    ]


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    return _ENVIRONMENT.from_string(source)


def _unknown_names(parsed: nodes.Template) -> str | None:
    """An unknown filter or test anywhere in the template, even in a branch not taken."""
    for node in parsed.find_all((nodes.Filter, nodes.Test)):
        known = _ENVIRONMENT.filters if isinstance(node, nodes.Filter) else _ENVIRONMENT.tests
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            return f"template line {node.lineno}: no {kind} named {node.name!r}"
    return None


def check_template(source: str, variables: frozenset[str]) -> None:
    """Raise ValueError, naming the line, if `source` would not render with `variables`."""
    try:
        parsed = _ENVIRONMENT.parse(source)
        unknown_name = _unknown_names(parsed)
        if unknown_name is not None:
            raise ValueError(unknown_name)
        declared = meta.find_undeclared_variables(parsed)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template line {exc.lineno}: {exc.message}") from exc
    unknown = sorted(declared - variables)
    if unknown:
        known = ", ".join(sorted(variables))
        names = ", ".join(repr(name) for name in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(f"unknown variable{plural} {names} (known: {known})")
    # Attributes (`answer.nmae`) and indexes are only found by rendering.
    for sample in _samples():
        try:
            _compiled(source).render({name: sample[name] for name in variables})
        except TemplateSyntaxError as exc:
            raise ValueError(f"template line {exc.lineno}: {exc.message}") from exc
        except Exception as exc:
            raise ValueError(f"the template does not render: {exc}") from exc


def render(source: str, **values: Any) -> str:
    """`source` rendered with `values`; raises TemplateFailed if it still fails."""
    try:
        return _compiled(source).render(values).strip()
    except Exception as exc:
        raise TemplateFailed(f"a prompt template failed: {exc}") from exc
