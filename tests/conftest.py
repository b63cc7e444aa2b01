"""What holds across the whole suite: no log line, of any test, shows a secret."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator

import pytest

from tests.log_watch import watch


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log_line() -> Iterator[None]:
    """Watches every record of the service's loggers at INFO and above (what it logs in
    production) and of every other logger that reaches the root, and the logs of the
    processes the tests start; fails the session's last test if any held a secret."""
    root, ours = logging.getLogger(), logging.getLogger("service")
    level = ours.level
    ours.setLevel(logging.INFO)
    root.addHandler(watch)
    try:
        yield
    finally:
        root.removeHandler(watch)
        ours.setLevel(level)
    assert watch.found == [], f"a secret-shaped string was logged by: {sorted(set(watch.found))}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    watch.current_test = item.nodeid
    return (yield)
