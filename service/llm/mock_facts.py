"""The few facts the mock knows, so that an offline evaluation can ask it short factual
questions with checkable answers (examples/eval/sample.jsonl is made from them):

    fact_answer("What is the capital of Norway?")   # ("Oslo", ("Paris", "Tokyo", ...))
    fact_answer("Who wrote Hamlet?")                 # ("William Shakespeare", (...))

With the answer come the other answers of its kind, from which a model told to be wrong
(`mock:wrong`) picks one.
"""

from __future__ import annotations

import re

CAPITALS: dict[str, str] = {
    "Argentina": "Buenos Aires",
    "Austria": "Vienna",
    "Canada": "Ottawa",
    "Cuba": "Havana",
    "Denmark": "Copenhagen",
    "Egypt": "Cairo",
    "Finland": "Helsinki",
    "France": "Paris",
    "Germany": "Berlin",
    "Ghana": "Accra",
    "Greece": "Athens",
    "Hungary": "Budapest",
    "Ireland": "Dublin",
    "Italy": "Rome",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Norway": "Oslo",
    "Peru": "Lima",
    "Poland": "Warsaw",
    "Portugal": "Lisbon",
    "Spain": "Madrid",
    "Sweden": "Stockholm",
    "Thailand": "Bangkok",
    "Uruguay": "Montevideo",
}

# A book and its author's full name.
AUTHORS: dict[str, str] = {
    "Crime and Punishment": "Fyodor Dostoevsky",
    "Don Quixote": "Miguel de Cervantes",
    "Frankenstein": "Mary Shelley",
    "Great Expectations": "Charles Dickens",
    "Hamlet": "William Shakespeare",
    "Moby-Dick": "Herman Melville",
    "Nineteen Eighty-Four": "George Orwell",
    "Pride and Prejudice": "Jane Austen",
    "The Old Man and the Sea": "Ernest Hemingway",
    "War and Peace": "Leo Tolstoy",
}

_CAPITAL = re.compile(r"\bcapital of ([A-Z][A-Za-z ]{0,40}?)\?")
_WROTE = re.compile(r"\b[Ww]ho wrote ([A-Z][A-Za-z -]{0,60}?)\?")


def fact_answer(question: str) -> tuple[str, tuple[str, ...]] | None:
    """The answer to a question about a fact the mock knows, and the other answers of its
    kind; None for any other question."""
    for pattern, table in ((_CAPITAL, CAPITALS), (_WROTE, AUTHORS)):
        found = pattern.search(question)
        if found is not None and found.group(1) in table:
            right = table[found.group(1)]
            return right, tuple(answer for answer in table.values() if answer != right)
    return None
