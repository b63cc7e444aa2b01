"""The pieces of an evaluation on their own: the data set's shapes, the scorers, the
bootstrap interval, and the price of a call."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest
from genai_prices.types import ModelPrice as ModelPriceTable

from service.ensemble import Agent, Ensemble, Target
from service.ensemble.model import ModelPrice
from service.ensemble.prices import price_of
from service.evaluation.dataset import DatasetError, load_dataset
from service.evaluation.scoring import interval, score
from service.llm import Usage


def test_the_three_shapes_of_a_data_set_load_alike(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"question": "What is 2 + 2?", "answer": 4}\n\n')
    evals = tmp_path / "evals.jsonl"
    evals.write_text(
        '{"input": [{"role": "system", "content": "Be brief."}, '
        '{"role": "user", "content": "What is 2 + 2?"}], "ideal": ["4", "four"]}\n'
    )
    table = tmp_path / "table.csv"
    table.write_text("question,answer\nWhat is 2 + 2?,4\n")
    loaded = [load_dataset(path)[0] for path in (plain, evals, table)]
    assert {item.question for item in loaded} == {"What is 2 + 2?"}
    assert [item.answers for item in loaded] == [("4",), ("4", "four"), ("4",)]
    assert [item.key for item in loaded] == ["1", "1", "2"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"question": "q"}\n', "data.jsonl:1: no answer"),
        ('{"answer": "a"}\n', "data.jsonl:1: no question"),
        (
            '{"question": "q", "answer": "4"}\n{"question": "q", "answer": " "}\n',
            "data.jsonl:2: an empty answer",
        ),
        ('{"question": "q", "ideal": ["4", ""]}\n', "data.jsonl:1: an empty answer"),
        ('{"question": "q", "answer": "a"}\nnot json\n', "data.jsonl:2: not JSON"),
        ("", "data.jsonl: no questions"),
    ],
)
def test_a_bad_data_set_names_the_file_and_the_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(text)
    with pytest.raises(DatasetError) as refused:
        load_dataset(path)
    assert str(refused.value).startswith(str(tmp_path))
    assert says in str(refused.value)


def test_a_csv_row_with_an_empty_answer_is_refused_by_its_line(tmp_path: Path) -> None:
    """An empty answer is in every reply: `includes` would score each one right."""
    path = tmp_path / "data.csv"
    path.write_text("question,answer\nWhat is 2 + 2?,4\nWhat is 3 + 3?,\n")
    with pytest.raises(DatasetError, match=r"data\.csv:3: an empty answer"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("answer", "right", "scorer", "expected"),
    [
        ("Paris.", ("paris",), "exact", True),
        ("It is Paris.", ("paris",), "exact", False),
        ("It is Paris.", ("paris",), "includes", True),
        ("It is Lyon.", ("paris",), "includes", False),
        ("colour", (r"colou?r",), "regex", True),
        ("The answer is 1,234.", ("1234",), "numeric", True),
        ("First 3, then 41.", ("42",), "numeric", False),
        ("About 3.1416", ("3.14159",), "numeric", False),
        ("no number", ("1",), "numeric", False),
    ],
)
def test_each_scorer(answer: str, right: tuple[str, ...], scorer: str, expected: bool) -> None:
    assert score(answer, right, scorer) is expected


def test_a_numeric_tolerance_is_relative() -> None:
    assert score("About 3.1416", ("3.14159",), "numeric", tolerance=1e-4)


def test_the_bootstrap_interval_holds_the_score_and_is_the_same_for_one_seed() -> None:
    outcomes = [1.0] * 30 + [0.0] * 10
    low, high = interval(outcomes, seed=3)
    assert low < 0.75 < high
    assert low > 0.55
    assert high < 0.9
    assert interval(outcomes, seed=3) == (low, high)
    assert interval([1.0] * 5, seed=3) == (1.0, 1.0)


def test_a_price_from_the_file_the_table_or_a_local_server() -> None:
    ensemble = Ensemble(
        agents=(Agent(name="a", system_prompt="x"), Agent(name="b", system_prompt="x")),
        strategy="vote",  # type: ignore[arg-type]
        prices={"private": ModelPrice(input_per_million=1.0, output_per_million=3.0)},
    )
    usage = Usage(prompt_tokens=2_000, completion_tokens=1_000)
    own = price_of(ensemble, Target(None, "private"), usage, "https://llm.example.test/v1")
    assert own == Decimal("0.005")  # 2,000 x $1/M + 1,000 x $3/M
    table = price_of(ensemble, Target(None, "gpt-4o-mini"), usage, "https://api.openai.com/v1")
    assert table is not None
    assert table > 0
    local = price_of(ensemble, Target(None, "llama3"), usage, "http://localhost:11434/v1")
    assert local == 0
    unknown = price_of(ensemble, Target(None, "nobody-knows-me"), usage, "https://x.test/v1")
    assert unknown is None


def test_a_price_from_the_table_is_its_figures_times_the_tokens_exactly() -> None:
    """gpt-4o-mini on OpenAI's API, as the bundled table lists it: $0.15 per million input
    tokens and $0.60 per million output tokens, read from the table's own entry."""
    snapshot = genai_prices.data_snapshot.get_snapshot()
    openai = next(provider for provider in snapshot.providers if provider.id == "openai")
    listed = next(model for model in openai.models if model.id == "gpt-4o-mini").prices
    assert isinstance(listed, ModelPriceTable)
    assert (listed.input_mtok, listed.output_mtok) == (Decimal("0.15"), Decimal("0.6"))

    ensemble = Ensemble(
        agents=(Agent(name="a", system_prompt="x"), Agent(name="b", system_prompt="x")),
        strategy="vote",  # type: ignore[arg-type]
    )
    usage = Usage(prompt_tokens=2_345, completion_tokens=678)
    cost = price_of(ensemble, Target(None, "gpt-4o-mini"), usage, "https://api.openai.com/v1")
    expected = (2_345 * listed.input_mtok + 678 * listed.output_mtok) / 1_000_000
    assert cost == expected == Decimal("0.00075855")
