"""Named ensembles, directories of them, prompt files and versions, as loaded from disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.ensemble import EnsembleError, UnknownEnsemble, load_ensembles

AGENT = '[[{prefix}agents]]\nname = "{name}"\nsystem_prompt = "You are {name}."\n'
SUMMARIZER = '[{prefix}summarizer]\nname = "s"\nsystem_prompt = "Combine."\n'


def single(*agents: str, prefix: str = "") -> str:
    text = "".join(AGENT.format(prefix=prefix, name=name) for name in agents)
    return text + SUMMARIZER.format(prefix=prefix)


def test_a_single_ensemble_file_is_the_default_ensemble(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text(single("a", "b"))
    loaded = load_ensembles(path)
    assert loaded.default == "default"
    name, ensemble = loaded.pick(None)
    assert name == "default"
    assert [a.name for a in ensemble.agents] == ["a", "b"]
    assert list(loaded.files) == [path]
    assert len(loaded.version) == 12


def test_named_ensembles_share_providers_and_name_a_default(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text(
        'default = "chat"\n[providers.local]\nbase_url = "http://localhost:11434/v1"\n'
        + single("a", prefix="ensembles.chat.")
        + single("b", "c", prefix="ensembles.code.")
        + '[ensembles.code.providers.other]\nbase_url = "http://other:8000/v1"\n'
    )
    loaded = load_ensembles(path)
    assert loaded.default == "chat"
    assert sorted(loaded.ensembles) == ["chat", "code"]
    assert [a.name for a in loaded.pick("code")[1].agents] == ["b", "c"]
    assert set(loaded.pick("chat")[1].providers) == {"local"}
    assert set(loaded.pick("code")[1].providers) == {"local", "other"}
    with pytest.raises(UnknownEnsemble) as caught:
        loaded.pick("poetry")
    assert caught.value.known == ["chat", "code"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            single("a", prefix="ensembles.x.") + single("b", prefix="ensembles.y."),
            "no ensemble named 'default'",
        ),
        ('default = "z"\n' + single("a", prefix="ensembles.x."), "no ensemble named 'z'"),
        ("min_agents = 2\n" + single("a", prefix="ensembles.x."), "min_agents: a file of named"),
        (
            single("a", prefix="ensembles.x.") + "[ensembles.x.summarizer]\n",
            "not valid TOML",
        ),
        (
            single("a", prefix="ensembles.x.").replace('name = "a"', "name = 5"),
            "e.toml:2: ensembles.x.agents[0].name: Input should be a valid string",
        ),
    ],
)
def test_a_bad_file_of_named_ensembles_says_where(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "e.toml"
    path.write_text(text)
    with pytest.raises(EnsembleError) as caught:
        load_ensembles(path)
    assert says in str(caught.value)


def test_a_directory_holds_one_ensemble_per_file(tmp_path: Path) -> None:
    (tmp_path / "default.toml").write_text(single("a"))
    (tmp_path / "code.toml").write_text(single("b"))
    (tmp_path / "notes.txt").write_text("not an ensemble")
    loaded = load_ensembles(tmp_path)
    assert sorted(loaded.ensembles) == ["code", "default"]
    assert loaded.default == "default"
    assert sorted(p.name for p in loaded.files) == ["code.toml", "default.toml"]


def test_a_directory_of_several_needs_one_named_default(tmp_path: Path) -> None:
    (tmp_path / "chat.toml").write_text(single("a"))
    (tmp_path / "code.toml").write_text(single("b"))
    with pytest.raises(EnsembleError, match="no ensemble named 'default'"):
        load_ensembles(tmp_path)
    (tmp_path / "chat.toml").unlink()
    assert load_ensembles(tmp_path).default == "code"


def test_prompts_can_live_in_files_next_to_the_ensemble(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "poet.md").write_text("You are a poet.\nToday is {{ date }}.\n")
    path = tmp_path / "e.toml"
    path.write_text(
        '[[agents]]\nname = "a"\nsystem_prompt_file = "prompts/poet.md"\n'
        + SUMMARIZER.format(prefix="")
    )
    loaded = load_ensembles(path)
    agent = loaded.pick(None)[1].agents[0]
    assert agent.system_prompt == "You are a poet.\nToday is {{ date }}."
    assert set(loaded.files) == {path, prompts / "poet.md"}

    first = loaded.version
    (prompts / "poet.md").write_text("You are a terse poet.\n")
    assert load_ensembles(path).version != first
    (prompts / "poet.md").write_text("You are a poet.\nToday is {{ date }}.\n")
    assert load_ensembles(path).version == first


@pytest.mark.parametrize(
    ("agent_keys", "says"),
    [
        ('system_prompt_file = "absent.md"\n', "cannot read the prompt file"),
        (
            'system_prompt = "x"\nsystem_prompt_file = "p.md"\n',
            "give system_prompt or system_prompt_file",
        ),
        ('system_prompt_file = "p.md"\n', "unknown variable 'nope'"),
    ],
)
def test_prompt_file_mistakes_are_load_errors(tmp_path: Path, agent_keys: str, says: str) -> None:
    (tmp_path / "p.md").write_text("{{ nope }}")
    path = tmp_path / "e.toml"
    path.write_text('[[agents]]\nname = "a"\n' + agent_keys + SUMMARIZER.format(prefix=""))
    with pytest.raises(EnsembleError, match=says):
        load_ensembles(path)


def test_the_version_follows_the_content_not_the_time(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text(single("a"))
    first = load_ensembles(path)
    path.write_text(single("a"))
    again = load_ensembles(path)
    assert again.version == first.version
    assert again.loaded_at >= first.loaded_at
    path.write_text(single("a", "b"))
    assert load_ensembles(path).version != first.version


def test_hidden_and_non_regular_files_in_a_directory_are_not_ensembles(tmp_path: Path) -> None:
    (tmp_path / "default.toml").write_text(single("a"))
    (tmp_path / ".#default.toml").symlink_to(tmp_path / "nowhere")
    (tmp_path / "._default.toml").write_text("\x00\x01 resource fork")
    (tmp_path / "sub.toml").mkdir()
    assert list(load_ensembles(tmp_path).ensembles) == ["default"]


def test_a_template_error_in_a_prompt_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "p.md").write_text("Hello\n{{ mesage }}")
    path = tmp_path / "e.toml"
    path.write_text(
        '[[agents]]\nname = "a"\nsystem_prompt_file = "p.md"\n' + SUMMARIZER.format(prefix="")
    )
    with pytest.raises(EnsembleError) as caught:
        load_ensembles(path)
    assert "system_prompt_file p.md: unknown variable 'mesage'" in str(caught.value)


def test_a_prompt_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.md")
    path = tmp_path / "e.toml"
    path.write_text(
        '[[agents]]\nname = "a"\nsystem_prompt_file = "pipe.md"\n' + SUMMARIZER.format(prefix="")
    )
    with pytest.raises(EnsembleError, match="not a regular file"):
        load_ensembles(path)


@pytest.mark.parametrize(("size", "accepted"), [(1 << 20, True), ((1 << 20) + 1, False)])
def test_a_prompt_file_may_be_up_to_1_mib(tmp_path: Path, size: int, accepted: bool) -> None:
    (tmp_path / "p.md").write_text("x" * size)
    path = tmp_path / "e.toml"
    path.write_text(
        '[[agents]]\nname = "a"\nsystem_prompt_file = "p.md"\n' + SUMMARIZER.format(prefix="")
    )
    if accepted:
        assert len(load_ensembles(path).pick(None)[1].agents[0].system_prompt) == size
    else:
        with pytest.raises(EnsembleError, match=f"larger than {1 << 20} bytes"):
            load_ensembles(path)
