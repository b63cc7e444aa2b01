"""Reloading: a good edit swaps in atomically, a bad one is kept out, the watcher notices."""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path

import pytest
import trio

from service.ensemble import EnsembleError, EnsembleStore, load_ensembles

ONE = (
    '[[agents]]\nname = "a"\nsystem_prompt = "You are a."\n'
    '[summarizer]\nname = "s"\nsystem_prompt = "c"\n'
)
TWO = ONE.replace(
    "[summarizer]", '[[agents]]\nname = "b"\nsystem_prompt = "You are b."\n[summarizer]'
)
BROKEN = ONE.replace('system_prompt = "You are a."', 'system_prompt = "You are a."\ntimeout_s = -1')


def store_for(path: Path, text: str) -> EnsembleStore:
    path.write_text(text)
    return EnsembleStore(partial(load_ensembles, path))


def rewrite(path: Path, text: str) -> None:
    """Write `text` so that the change shows even within one mtime tick."""
    before = path.stat()
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


async def test_a_good_edit_becomes_the_new_version_and_old_pins_stay_intact(
    tmp_path: Path,
) -> None:
    path = tmp_path / "e.toml"
    store = store_for(path, ONE)
    pinned = store.current
    rewrite(path, TWO)

    assert await store.reload("test") is True
    assert store.current.version != pinned.version
    assert [a.name for a in store.current.pick(None)[1].agents] == ["a", "b"]
    # A request that pinned the old version still sees it whole.
    assert [a.name for a in pinned.pick(None)[1].agents] == ["a"]
    assert store.problem is None


async def test_a_broken_edit_keeps_the_running_version_and_records_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "e.toml"
    store = store_for(path, ONE)
    running = store.current
    rewrite(path, BROKEN)

    with caplog.at_level(logging.ERROR):
        assert await store.reload("test") is False
    assert store.current is running
    assert store.problem is not None
    assert store.problem.message.startswith(f"{path}:4: agents[0].timeout_s: Input should be")
    (record,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert running.version in record.getMessage()
    assert "agents[0].timeout_s" in record.getMessage()

    rewrite(path, TWO)
    assert await store.reload("test") is True
    assert store.problem is None


async def test_an_unchanged_file_is_not_a_new_version(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    store = store_for(path, ONE)
    running = store.current
    rewrite(path, ONE)
    assert await store.reload("test") is False
    assert store.current is running


async def test_the_watcher_reloads_an_edited_file_within_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    store = store_for(path, ONE)
    first = store.current.version
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.watch, 0.05)
        await trio.sleep(0.1)
        rewrite(path, TWO)
        with trio.fail_after(10):
            new = await store.next_version()
        nursery.cancel_scope.cancel()
    assert new.version != first
    assert [a.name for a in new.pick(None)[1].agents] == ["a", "b"]


async def test_the_watcher_follows_prompt_files_too(tmp_path: Path) -> None:
    prompt = tmp_path / "a.md"
    prompt.write_text("You are a.")
    path = tmp_path / "e.toml"
    store = store_for(
        path, ONE.replace('system_prompt = "You are a."', 'system_prompt_file = "a.md"')
    )
    first = store.current.version
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.watch, 0.05)
        rewrite(prompt, "You are a, and brief.")
        with trio.fail_after(10):
            new = await store.next_version()
        nursery.cancel_scope.cancel()
    assert new.version != first
    assert store.current.pick(None)[1].agents[0].system_prompt == "You are a, and brief."


def test_the_first_load_failing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EnsembleError):
        store_for(tmp_path / "e.toml", BROKEN)


async def test_a_refused_edit_naming_a_missing_prompt_file_is_retried_when_it_appears(
    tmp_path: Path,
) -> None:
    path = tmp_path / "e.toml"
    store = store_for(path, ONE)
    first = store.current.version
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.watch, 0.05)
        rewrite(path, ONE.replace('system_prompt = "You are a."', 'system_prompt_file = "a.md"'))
        with trio.fail_after(10):
            while store.problem is None:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert "cannot read the prompt file" in store.problem.message
        (tmp_path / "a.md").write_text("You are a, from a file.")
        with trio.fail_after(10):
            new = await store.next_version()
        nursery.cancel_scope.cancel()
    assert new.version != first
    assert store.problem is None


async def test_a_file_system_error_never_stops_the_watcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "e.toml"
    store = store_for(path, ONE)
    real_isdir = os.path.isdir

    def denied(candidate: object) -> bool:
        if candidate == path:
            raise PermissionError(13, "Permission denied")
        return real_isdir(candidate)  # type: ignore[arg-type]

    monkeypatch.setattr(os.path, "isdir", denied)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.watch, 0.02)
        await trio.sleep(0.1)
        monkeypatch.setattr(os.path, "isdir", real_isdir)
        rewrite(path, TWO)
        with trio.fail_after(10):
            new = await store.next_version()
        nursery.cancel_scope.cancel()
    assert [a.name for a in new.pick(None)[1].agents] == ["a", "b"]
