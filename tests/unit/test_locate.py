"""line_of: a validation error's field path leads to the line where that field is written."""

from __future__ import annotations

from service.ensemble.locate import line_of

ENSEMBLE = """\
# An ensemble
min_agents = 2

[providers.openai]
base_url = "https://api.openai.com/v1"
headers = { "OpenAI-Project" = "p" }

[[agents]]
name = "a"
system_prompt = \"\"\"
[[agents]]
name = "not a real agent"
\"\"\"
timeout_s = 5

[[agents]]
name = "b"
fallback_models = [
  "x",
  { model = "y" },
]

[summarizer]
name = "s"

[ensembles.code]
[[ensembles.code.agents]]
name = "c"
model = "m"
"""


def test_top_level_key_is_found_below_comments_and_blank_lines() -> None:
    assert line_of(ENSEMBLE, ("min_agents",)) == 2


def test_key_inside_a_dotted_table_header() -> None:
    assert line_of(ENSEMBLE, ("providers", "openai", "base_url")) == 5


def test_key_of_an_inline_table_points_at_the_table_key() -> None:
    assert line_of(ENSEMBLE, ("providers", "openai", "headers", "OpenAI-Project")) == 6


def test_first_array_element_keys() -> None:
    assert line_of(ENSEMBLE, ("agents", 0, "name")) == 9
    assert line_of(ENSEMBLE, ("agents", 0, "timeout_s")) == 14


def test_array_index_skips_a_fake_header_inside_a_multiline_string() -> None:
    assert line_of(ENSEMBLE, ("agents", 1)) == 16
    assert line_of(ENSEMBLE, ("agents", 1, "name")) == 17


def test_missing_key_falls_back_to_its_array_table_header() -> None:
    assert line_of(ENSEMBLE, ("agents", 1, "timeout_s")) == 16
    assert line_of(ENSEMBLE, ("agents", 0, "model")) == 8


def test_missing_key_falls_back_to_its_table_header() -> None:
    assert line_of(ENSEMBLE, ("summarizer", "system_prompt")) == 23


def test_index_into_a_multiline_array_points_at_the_element() -> None:
    assert line_of(ENSEMBLE, ("agents", 1, "fallback_models")) == 18
    assert line_of(ENSEMBLE, ("agents", 1, "fallback_models", 0)) == 19
    assert line_of(ENSEMBLE, ("agents", 1, "fallback_models", 1, "model")) == 20


def test_nested_array_of_tables_under_a_named_ensemble() -> None:
    assert line_of(ENSEMBLE, ("ensembles", "code")) == 26
    assert line_of(ENSEMBLE, ("ensembles", "code", "agents", 0)) == 27
    assert line_of(ENSEMBLE, ("ensembles", "code", "agents", 0, "model")) == 29


def test_whole_array_of_tables_points_at_its_first_header() -> None:
    assert line_of(ENSEMBLE, ("agents",)) == 8


def test_empty_loc_or_unwritten_path_gives_none() -> None:
    assert line_of(ENSEMBLE, ()) is None
    assert line_of(ENSEMBLE, ("judges", 0, "name")) is None
    assert line_of(ENSEMBLE, ("providers", "anthropic", "base_url")) is None


def test_quoted_keys_in_headers_and_assignments_and_spaces_around_equals() -> None:
    text = '[providers."my.server"]\nbase_url="http://x"\n"X-Team"   =   "a"\n\'X-Env\' = "b"\n'
    assert line_of(text, ("providers", "my.server", "base_url")) == 2
    assert line_of(text, ("providers", "my.server", "X-Team")) == 3
    assert line_of(text, ("providers", "my.server", "X-Env")) == 4


def test_dotted_keys_are_paths() -> None:
    text = 'min_agents = 1\nsummarizer.name = "s"\nsummarizer.system_prompt = "p"\n'
    assert line_of(text, ("summarizer", "system_prompt")) == 3


def test_literal_multiline_string_and_bracket_lines_inside_an_array_are_not_headers() -> None:
    text = "notes = '''\n[summarizer]\n'''\nmatrix = [\n  [1],\n]\n[summarizer]\nname = 's'\n"
    assert line_of(text, ("summarizer", "name")) == 8
    assert line_of(text, ("matrix", 0, 0)) == 5


def test_escaped_quote_does_not_end_a_string() -> None:
    text = 'prompt = """say \\""" [x]\n"""\n[[agents]]\nname = "a"\n'
    assert line_of(text, ("agents", 0, "name")) == 4


def test_array_of_tables_counts_per_parent() -> None:
    text = (
        "[ensembles.code]\n[[ensembles.code.agents]]\nname = 'c0'\n"
        "[ensembles.chat]\n[[ensembles.chat.agents]]\nname = 'h0'\n"
        "[[ensembles.code.agents]]\nname = 'c1'\n"
    )
    assert line_of(text, ("ensembles", "code", "agents", 1, "name")) == 8
    assert line_of(text, ("ensembles", "chat", "agents", 0, "name")) == 6


def test_sub_table_belongs_to_the_newest_array_element() -> None:
    text = "[[agents]]\nname = 'a'\n[[agents]]\nname = 'b'\n[agents.limits]\nrpm = 5\n"
    assert line_of(text, ("agents", 1, "limits", "rpm")) == 6
    assert line_of(text, ("agents", 0, "limits", "rpm")) == 1


def test_unexpected_input_gives_none_instead_of_raising() -> None:
    assert line_of("[[agents]\nname = ", ("agents", 0)) is None
    # Not TOML (a key given twice), so no line is trusted, although one looks plausible.
    assert line_of('name = "a"\nname = "b"\n', ("name",)) is None
    assert line_of(ENSEMBLE, None) is None  # type: ignore[arg-type]
