"""Prompt templates: checked at load with named variables, rendered per request, answers cut."""

from __future__ import annotations

import re

import pytest

from service.ensemble import Agent, EnsembleError, Summarizer, parse_ensemble
from service.ensemble.templates import (
    AGENT_VARIABLES,
    SUMMARIZER_VARIABLES,
    TemplateFailed,
    check_template,
    render,
)
from service.pipeline.prompt import agent_messages, summary_messages


@pytest.mark.parametrize(
    ("source", "variables", "says"),
    [
        ("Hello {{ mesage }}", AGENT_VARIABLES, "unknown variable 'mesage' (known: agent, date"),
        ("{{ answers }}", AGENT_VARIABLES, "unknown variable 'answers'"),
        ("{{ a }} {{ b }}", AGENT_VARIABLES, "unknown variables 'a', 'b'"),
        (
            "line one\n{% if message %}\nno end",
            AGENT_VARIABLES,
            "template line 2: Unexpected end of template",
        ),
        ("{{ message | nosuchfilter }}", AGENT_VARIABLES, "template line 1: no filter named"),
        (
            "{% if agent == 'poet' %}\n{{ message | uper }}{% endif %}",
            AGENT_VARIABLES,
            "template line 2: no filter named 'uper'",
        ),
        ("{{ answers[1].text }}", SUMMARIZER_VARIABLES, "does not render"),
        ("{{ missing | first }}", SUMMARIZER_VARIABLES, "does not render"),
        ("{{ 1 // 0 }}", AGENT_VARIABLES, "does not render"),
        ("{{ answers.clear() or '' }}", SUMMARIZER_VARIABLES, "does not render"),
        (
            "{% for a in answers %}{{ a.nmae }}{% endfor %}",
            SUMMARIZER_VARIABLES,
            "does not render",
        ),
    ],
)
def test_a_template_that_cannot_render_is_refused_with_the_reason(
    source: str, variables: frozenset[str], says: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        check_template(source, variables)


def test_a_template_error_in_a_file_names_the_line_and_field() -> None:
    text = (
        '[[agents]]\nname = "a"\nsystem_prompt = "p"\nprompt = "Q: {{ question }}"\n'
        '[summarizer]\nname = "s"\nsystem_prompt = "c"\n'
    )
    with pytest.raises(EnsembleError) as caught:
        parse_ensemble(text, source="e.toml")
    assert str(caught.value).startswith("e.toml:4: agents[0].prompt: unknown variable 'question'")


@pytest.mark.parametrize(
    ("summarizer_keys", "says"),
    [
        (
            'system_prompt = "c"\nprompt = "{{ agent }}: {{ message }}"\n',
            "e.toml:7: summarizer.prompt: unknown variable 'agent'",
        ),
        (
            'system_prompt = "Combine {{ answer }}."\n',
            "e.toml:6: summarizer.system_prompt: unknown variable 'answer'",
        ),
    ],
)
def test_a_summarizer_template_naming_an_unknown_variable_is_refused_at_load(
    summarizer_keys: str, says: str
) -> None:
    text = (
        '[[agents]]\nname = "a"\nsystem_prompt = "p"\n[summarizer]\nname = "s"\n' + summarizer_keys
    )
    with pytest.raises(EnsembleError) as caught:
        parse_ensemble(text, source="e.toml")
    assert str(caught.value).startswith(says)


def test_a_summarizer_template_may_use_every_summarizer_variable() -> None:
    prompt = "{{ summarizer }} {{ date }}: {{ message }} {{ answers | length }} {{ missing }}"
    text = (
        '[[agents]]\nname = "a"\nsystem_prompt = "p"\n'
        f'[summarizer]\nname = "s"\nsystem_prompt = "c"\nprompt = "{prompt}"\n'
    )
    assert parse_ensemble(text, source="e.toml").summarizer.prompt == prompt


def test_agents_see_the_message_their_name_and_the_date() -> None:
    agent = Agent(
        name="poet",
        system_prompt="You are {{ agent }}. Today is {{ date }}.",
        prompt="Answer in verse: {{ message }}",
    )
    system, user = agent_messages(agent, "Why is the sky blue?")
    assert re.fullmatch(r"You are poet\. Today is \d{4}-\d{2}-\d{2}\.", system.content)
    assert user.content == "Answer in verse: Why is the sky blue?"


def test_a_message_that_looks_like_a_template_is_only_text() -> None:
    agent = Agent(name="a", system_prompt="s")
    _, user = agent_messages(agent, "{{ 7 * 7 }} {% if x %}")
    assert user.content == "{{ 7 * 7 }} {% if x %}"


def test_the_summarizer_sees_answers_missing_agents_and_a_custom_layout() -> None:
    summarizer = Summarizer(
        name="s",
        system_prompt="Combine for {{ summarizer }}.",
        prompt=(
            "{{ message }}\n{% for a in answers %}- {{ a.name }}: {{ a.text }}"
            "{% if a.truncated %} (cut){% endif %}\n{% endfor %}"
            "missing: {{ missing | join(', ') }}"
        ),
    )
    system, user = summary_messages(
        summarizer, "Q?", [("a", "short"), ("b", "x" * 150)], ["c"], max_answer_chars=100
    )
    assert system.content == "Combine for s."
    lines = user.content.split("\n")
    assert lines[0] == "Q?"
    assert lines[1] == "- a: short"
    assert lines[2].startswith("- b: " + "x" * 100)
    assert lines[3] == "[... 50 more characters cut] (cut)"
    assert lines[4] == "missing: c"


def test_the_default_summary_prompt_tags_each_answer() -> None:
    summarizer = Summarizer(name="s", system_prompt="Combine.")
    _, user = summary_messages(
        summarizer, "Why?", [("a", "A."), ("b", "B.")], ["c"], max_answer_chars=1000
    )
    assert user.content == (
        "The user asked:\n<question>\nWhy?\n</question>\n\n"
        "Answers from 2 agent(s):\n\n"
        '<answer from="a">\nA.\n</answer>\n\n<answer from="b">\nB.\n</answer>\n\n'
        "No answer arrived from: c. Combine the answers above."
    )


def test_render_strips_the_edges_a_multi_line_toml_string_leaves() -> None:
    assert render("\n  Hello {{ message }}\n\n", message="you") == "Hello you"


def test_a_refused_template_cannot_change_what_later_checks_see() -> None:
    with pytest.raises(ValueError, match="does not render"):
        check_template("{{ answers.clear() or '' }}", SUMMARIZER_VARIABLES)
    check_template("{{ answers[0].name }}", SUMMARIZER_VARIABLES)


def test_a_template_that_fails_at_request_time_fails_that_summary_only() -> None:
    summarizer = Summarizer.model_construct(
        name="s", system_prompt="Combine.", prompt="{{ answers[3].text }}"
    )
    with pytest.raises(TemplateFailed):
        summary_messages(summarizer, "Q?", [("a", "A.")], [], max_answer_chars=100)
