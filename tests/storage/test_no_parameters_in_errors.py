"""A failed statement never carries its parameters into an error or a log line: they may
hold a user's text, a key's hash, anything a client sent."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.storage.database import create_database_engine

MARKER = "a-parameter-no-log-may-show"


def test_a_failed_statement_hides_its_parameters(url: str) -> None:
    engine = create_database_engine(url)
    try:
        with pytest.raises(DBAPIError) as failed, engine.begin() as connection:
            connection.execute(text("SELECT x FROM no_such_table WHERE x = :p"), {"p": MARKER})
    finally:
        engine.dispose()
    assert MARKER not in str(failed.value)
    assert "SELECT x FROM no_such_table" in str(failed.value)  # the statement is still shown
