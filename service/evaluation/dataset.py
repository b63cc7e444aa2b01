"""The questions of an evaluation and the answers that count as right, from the common
shapes of data sets:

    {"question": "What is 2 + 2?", "answer": "4"}                       # JSONL
    {"input": [{"role": "user", "content": "..."}], "ideal": "4"}        # OpenAI evals
    question,answer                                                      # CSV, a header row

`answer` / `ideal` may be a list: any of them counts. A line that is none of these is an
error naming the file and the line, before anything is asked.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DatasetError(Exception):
    """One line for the operator: the file, the line, what is wrong."""


@dataclass(frozen=True, slots=True)
class Item:
    """One question; `key` names it in the results (its `id`, else its line number)."""

    key: str
    question: str
    answers: tuple[str, ...]


def load_dataset(path: Path) -> list[Item]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read it: {exc}") from exc
    return parse_dataset(text, str(path), csv_format=path.suffix.lower() == ".csv")


def parse_dataset(text: str, source: str, *, csv_format: bool = False) -> list[Item]:
    """The questions of a data set's text (JSONL, or CSV with a header row); `source` names
    it in errors (a file, or an uploaded field)."""
    rows = _csv_rows(text) if csv_format else _jsonl_rows(source, text)
    return _checked(source, [_item(f"{source}:{line}", row, str(line)) for line, row in rows])


def dataset_of_rows(rows: list[Any], source: str) -> list[Item]:
    """The questions of rows already read (an uploaded list): each in a shape JSONL takes."""
    return _checked(
        source,
        [_item(f"{source}[{index}]", row, str(index + 1)) for index, row in enumerate(rows)],
    )


def _checked(source: str, items: list[Item]) -> list[Item]:
    if not items:
        raise DatasetError(f"{source}: no questions")
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        raise DatasetError(f"{source}: two questions have the same id")
    return items


def _jsonl_rows(source: str, text: str) -> list[tuple[int, Any]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rows.append((line, json.loads(raw)))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{source}:{line}: not JSON: {exc.msg}") from exc
    return rows


def _csv_rows(text: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(text.splitlines())
    return [(number, row) for number, row in enumerate(reader, start=2)]


def _item(where: str, row: Any, position: str) -> Item:
    """One question; `position` keys it when it has no `id` (its line, or its place)."""
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected an object")
    question = row.get("question")
    if question is None and "input" in row:
        question = _question_of(where, row["input"])
    ideal = row.get("answer", row.get("ideal"))
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f"{where}: no question (a `question`, or `input` messages)")
    answers = ideal if isinstance(ideal, list) else [ideal]
    if ideal is None or not answers or any(not isinstance(a, str | int | float) for a in answers):
        raise DatasetError(f"{where}: no answer (an `answer` or `ideal`, text or a list)")
    if any(not str(a).strip() for a in answers):
        # Every reply includes the empty text: each would be scored right.
        raise DatasetError(f"{where}: an empty answer (every reply would count as right)")
    key = str(row.get("id") or position)
    return Item(key=key, question=question.strip(), answers=tuple(str(a) for a in answers))


def _question_of(where: str, messages: Any) -> str | None:
    """An OpenAI evals `input`: a string, or messages whose last user message is asked."""
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list):
        raise DatasetError(f"{where}: `input` is neither text nor messages")
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else None
