"""The start block's pieces: hosts without their credentials, one block per start."""

from __future__ import annotations

import logging

import pytest

from service.process.startup_report import host_of, log_startup
from service.resources import load_configured_ensembles
from service.settings import load_settings


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://user:pw@api.example.com/v1?key=abc", "api.example.com"),
        ("http://localhost:11434/v1", "localhost:11434"),
        ("redis://:secret@[::1]:6380/0", "[::1]:6380"),
        ("unix:///run/redis.sock", "unix"),
    ],
)
def test_a_url_shows_its_host_and_port_only(url: str, host: str) -> None:
    assert host_of(url) == host


def test_a_worker_leaves_the_block_to_its_parent(caplog: pytest.LogCaptureFixture) -> None:
    parent = load_settings({"DATABASE_URL": "none"}, dotenv_path=None)
    worker = load_settings({"DATABASE_URL": "none", "FANOUT_LISTEN_FD": "3"}, dotenv_path=None)
    ensembles = load_configured_ensembles(parent)
    with caplog.at_level(logging.INFO, logger="service.start"):
        log_startup(worker, ensembles)
        assert caplog.messages == []
        log_startup(parent, ensembles)
    assert caplog.messages[0] == "starting: http://0.0.0.0:8080, 1 worker"
    assert "  store:    none (DATABASE_URL=none): nothing is kept" in caplog.messages
