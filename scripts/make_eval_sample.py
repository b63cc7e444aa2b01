"""Write the sample evaluation sets of examples/eval/ again, the same bytes every time (a
fixed seed): arithmetic word problems with their answers worked out, and short factual
questions drawn from the facts the mock knows (service/llm/mock_facts.py), so that the mock
answers each right, or, as `mock:wrong`, wrong on a share of them.

    .venv/bin/python -m scripts.make_eval_sample             # examples/eval/*.jsonl
    .venv/bin/python -m scripts.make_eval_sample --out DIR

arithmetic.jsonl holds the word problems alone (a number each: the `numeric` scorer fits);
sample.jsonl, the set `make eval` runs, holds them and the factual questions (`includes`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from service.llm.mock_facts import AUTHORS, CAPITALS

SEED = 27
WORD_PROBLEMS = 60
CAPITAL_QUESTIONS = 20
OUT = Path(__file__).resolve().parents[1] / "examples" / "eval"

NAMES = ("Ana", "Ben", "Chloe", "Dev", "Ella", "Farid", "Grace", "Hugo", "Ines", "Jonas")
THINGS = ("apples", "marbles", "stickers", "pencils", "shells", "cards")
ANIMALS = ("sheep", "cows", "goats", "ducks", "hens")
# Other spellings a right answer may use.
SPELLINGS: dict[str, tuple[str, ...]] = {"Dostoevsky": ("Dostoevsky", "Dostoyevsky")}

Problem = tuple[str, int]


def _adding(rng: random.Random) -> Problem:
    a, b = rng.randint(12, 89), rng.randint(11, 59)
    if rng.random() < 0.5:
        name, things = rng.choice(NAMES), rng.choice(THINGS)
        return (
            f"{name} has {a} {things} and buys {b} more. How many {things} does {name} have now?",
            a + b,
        )
    animals = rng.choice(ANIMALS)
    return (
        f"A farm has {a} {animals} in one field and {b} in another. How many {animals} are "
        "there altogether?",
        a + b,
    )


def _subtracting(rng: random.Random) -> Problem:
    a = rng.randint(40, 99)
    b = rng.randint(5, a - 5)
    if rng.random() < 0.5:
        name, things = rng.choice(NAMES), rng.choice(THINGS)
        return (
            f"{name} had {a} {things} and gave {b} to a friend. How many {things} are left?",
            a - b,
        )
    first, second = rng.sample(NAMES, 2)
    things = rng.choice(THINGS)
    return (
        f"{first} has {a} {things}, and {second} has {b} fewer. How many {things} does "
        f"{second} have?",
        a - b,
    )


def _multiplying(rng: random.Random) -> Problem:
    a, b = rng.randint(3, 12), rng.randint(4, 15)
    if rng.random() < 0.5:
        things = rng.choice(THINGS)
        return (
            f"There are {a} boxes with {b} {things} in each box. How many {things} are there "
            "in all?",
            a * b,
        )
    name = rng.choice(NAMES)
    return (
        f"{name} reads {b} pages each day for {a} days. How many pages does {name} read?",
        a * b,
    )


def _dividing(rng: random.Random) -> Problem:
    children, share = rng.randint(2, 9), rng.randint(3, 12)
    things = rng.choice(THINGS)
    return (
        f"{children * share} {things} are shared equally among {children} children. How many "
        f"{things} does each child get?",
        share,
    )


KINDS: Sequence[Callable[[random.Random], Problem]] = (
    _adding,
    _subtracting,
    _multiplying,
    _dividing,
)


def word_problems(rng: random.Random) -> list[dict[str, Any]]:
    """WORD_PROBLEMS of them, as many of each kind, in a shuffled order."""
    kinds = [KINDS[n % len(KINDS)] for n in range(WORD_PROBLEMS)]
    rng.shuffle(kinds)
    rows = []
    for number, kind in enumerate(kinds, start=1):
        question, answer = kind(rng)
        rows.append({"id": f"w{number:02}", "question": question, "answer": str(answer)})
    return rows


def factual_questions(rng: random.Random) -> list[dict[str, Any]]:
    """CAPITAL_QUESTIONS capitals and every book's author (any spelling of the surname)."""
    asked: list[tuple[str, str, tuple[str, ...]]] = [
        (f"What is the capital of {country}?", CAPITALS[country], (CAPITALS[country],))
        for country in rng.sample(sorted(CAPITALS), CAPITAL_QUESTIONS)
    ]
    for title, author in sorted(AUTHORS.items()):
        surname = author.split()[-1]
        asked.append((f"Who wrote {title}?", author, SPELLINGS.get(surname, (surname,))))
    rng.shuffle(asked)
    rows = []
    for number, (question, right, answers) in enumerate(asked, start=1):
        _check_no_wrong_reply_includes(right, answers)
        answer: str | list[str] = answers[0] if len(answers) == 1 else list(answers)
        rows.append({"id": f"f{number:02}", "question": question, "answer": answer})
    return rows


def _check_no_wrong_reply_includes(right: str, answers: Sequence[str]) -> None:
    """The `includes` scorer must find the answers in the mock's right reply, and in none
    of its wrong ones (another fact's answer, as `mock:wrong` gives it)."""
    for said in (*CAPITALS.values(), *AUTHORS.values()):
        reply = f"The answer is {said}.".lower()
        if any(answer.lower() in reply for answer in answers) != (said == right):
            raise ValueError(f"{answers}: the scorer would misjudge {reply!r}")


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_sample(out: Path) -> list[Path]:
    """Write arithmetic.jsonl and sample.jsonl into `out`; the same bytes every time."""
    rng = random.Random(SEED)
    problems = word_problems(rng)
    facts = factual_questions(rng)
    written = []
    for name, rows in (("arithmetic.jsonl", problems), ("sample.jsonl", problems + facts)):
        path = out / name
        path.write_text(_jsonl(rows), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the folder to write into")
    args = parser.parse_args(argv)
    if not args.out.is_dir():
        print(f"error: {args.out}: no such folder", file=sys.stderr)
        return 2
    for path in write_sample(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
