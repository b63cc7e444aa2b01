from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.storage.database import Database
from service.storage.migrate import migrate
from service.storage.store import Store
from tests.databases import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def database(url: str) -> Iterator[Database]:
    database = Database.connect(url)
    migrate(database.engine)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def store(database: Database) -> Store:
    return Store(database, instance="test-instance")
