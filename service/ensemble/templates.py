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
SUMMARIZER_VARIABLES = frozenset(
    {"message", "summarizer", "date", "answers", "missing", "history", "reviews", "ranking"}
)
# The later steps of a deliberation (revise, layer, review, select): `agent` is the member
# asked, `answers` what it is shown (named, or labelled "Response A" where anonymised), `own`
# its own answer of the step before ("" where it has none), `round` and `rounds` where it is.
STEP_VARIABLES = frozenset(
    {"message", "agent", "date", "history", "answers", "own", "round", "rounds"}
)

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

# Debate (Du et al. 2023): each agent reads the others' answers and revises its own.
DEFAULT_REVISE_PROMPT = """\
{{ message }}

Your answer so far:
<answer>
{{ own }}
</answer>

The other agents answered:
{%- for answer in answers %}

<answer from="{{ answer.name }}">
{{ answer.text }}
</answer>
{%- endfor %}

Use their reasoning as additional advice, weighing it critically, and give your updated \
answer to the question (round {{ round }} of {{ rounds }})."""

# Mixture-of-agents (Wang et al. 2024): each agent of a layer synthesizes the layer before.
DEFAULT_LAYER_PROMPT = """\
You have been given the responses of several models to the user's question. Synthesize \
them into one response of high quality: evaluate them critically (some of what they say \
may be biased or wrong), do not simply repeat them, and give an accurate, complete and \
well-structured reply.

Responses:
{%- for answer in answers %}
{{ loop.index }}. {{ answer.text }}
{%- endfor %}

The user's question:
{{ message }}"""

# Council (the llm-council pattern): each member ranks the others' anonymised answers.
DEFAULT_REVIEW_PROMPT = """\
Several models answered this question:
<question>
{{ message }}
</question>
{%- for answer in answers %}

{{ answer.name }}:
{{ answer.text }}
{%- endfor %}

Evaluate each response: say what it does well and what it does poorly. Then end your \
reply with your ranking, best first, in exactly this form (these names, in your order) and \
with nothing after it:

FINAL RANKING:
{%- for answer in answers %}
{{ loop.index }}. {{ answer.name }}
{%- endfor %}"""

# Universal self-consistency (Chen et al. 2023): one call picks the most consistent answer.
DEFAULT_SELECT_PROMPT = """\
I have generated the following responses to the question: {{ message }}
{%- for answer in answers %}

{{ answer.name }}: {{ answer.text }}
{%- endfor %}

Evaluate these responses. Select the most consistent response based on majority \
consensus. Start your answer with "The most consistent response is Response X" (without \
quotes), X being its number."""

# The council's chairman writes the reply from the answers and the reviews.
DEFAULT_CHAIRMAN_PROMPT = """\
The user asked:
<question>
{{ message }}
</question>

Answers from {{ answers | length }} council member(s):
{%- for answer in answers %}

<answer from="{{ answer.name }}">
{{ answer.text }}
</answer>
{%- endfor %}

The members then reviewed and ranked each other's answers:
{%- for review in reviews %}

<review from="{{ review.name }}">
{{ review.text }}
</review>
{%- endfor %}
{%- if ranking %}

Aggregate ranking, best first: {% for rank in ranking %}{{ rank.name }} (mean place \
{{ rank.average_rank }}){% if not loop.last %}, {% endif %}{% endfor %}.
{%- endif %}

As the council's chairman, write the single best answer to the question, drawing on the \
answers and on what the reviews found."""

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
class RankView:
    """One answer's place in a council's aggregate ranking (`ranking`, best first)."""

    name: str
    average_rank: float
    reviews: int


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
    common: dict[str, Any] = {"message": "What is the question?", "agent": "agent"}
    common |= {"summarizer": "s", "date": "2000-01-01", "round": 1, "rounds": 2}
    one = [AnswerView("a", "An answer.")]
    several = [AnswerView("a", "An answer."), AnswerView("b", "Another.", truncated=True)]
    history = [TurnView("user", "An earlier question?"), TurnView("assistant", "Its answer.")]
    reviews = [AnswerView("a", "b is better. FINAL RANKING:\n1. b")]
    ranking = [RankView("b", 1.0, 1), RankView("a", 2.0, 1)]
    return [
        {**common, "answers": several, "missing": ["c"], "history": [], "own": "Mine."},
        {**common, "answers": one, "missing": [], "history": history, "own": ""},
        {**common, "answers": several, "missing": [], "history": history, "own": "Mine."}
        | {"reviews": reviews, "ranking": ranking},
        {**common, "answers": one, "missing": ["b", "c"], "history": [], "own": ""},
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
            _compiled(source).render({name: sample.get(name, []) for name in variables})
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
