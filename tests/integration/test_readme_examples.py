"""Every example of the README, run as written against a real `python -m service`.

Each ```sh and ```python block of README.md runs with bash, in README order, in one shell
session per server, as a reader in one terminal runs them (a variable one block sets, the
next may use). A line `VAR=value make run` names the settings of the server the block
talks to (the defaults without one), and so does `make run VAR=value`, read as make itself
would run it (`make run ENSEMBLE=council` is `ENSEMBLE_FILE=examples/council.toml`); the
blocks that name the same settings share a server. `localhost:8080` becomes the test
server's address, `.venv/bin/llm-fanout` is the console script `pip install` made, and
`examples/` is the repository's. A block that cannot run here (a real provider, an OIDC
provider) is marked in the README with `<!-- not run: why -->` on the line before it.

What each block must do is written below (EXPECTED), from the text around it. Every HTTP
answer a block gets is checked, through a `curl` first on the PATH that reports each status
and passes the call on unchanged, and so is what the block prints.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from service.__main__ import main
from service.events import KINDS, StepFields
from tests.integration.test_main_process import ROOT, service_env
from tests.service_process import served

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!-- not run: (.+) -->$")
# `AUTH=keys make run    # in another terminal`: the server this block talks to; make's own
# variables may follow (`make run ENSEMBLE=council`).
ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*=")
MAKE_RUN = re.compile(
    r"^(?P<settings>(?:[A-Z][A-Z0-9_]*=\S+\s+)*)make run\b"
    r"(?P<variables>(?:\s+[A-Z][A-Z0-9_]*=\S+)*)"
)
RUNNABLE = {"sh", "python"}
SHOWN_ONLY = {"text", "json", "toml"}  # output and files: read, never run
STATUS_LINE = re.compile(r"^readme-example: HTTP (\d{3}) (\S+) (\S+)$", re.M)
# A row of the event table: | `agent.started` | status | source | extras |
EVENT_ROW = re.compile(r"^\| `([a-z]+(?:\.[a-z]+)?)` \| (.*)$", re.M)


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    not_run: str | None  # why, when the README marks it

    def commands(self) -> list[str]:
        """Its lines, a command continued with `\\` on one."""
        return self.code.replace("\\\n", " ").splitlines()

    def servers(self) -> list[dict[str, str]]:
        """The settings of each `VAR=value make run VARIABLE=value` in it."""
        found = [MAKE_RUN.match(command) for command in self.commands()]
        return [
            assignments(shlex.split(match.group("settings")))
            | make_run_settings(tuple(shlex.split(match.group("variables"))))
            for match in found
            if match
        ]

    def settings(self) -> tuple[tuple[str, str], ...]:
        """The server it talks to; the defaults when it starts none."""
        servers = self.servers()
        return tuple(sorted(servers[0].items())) if servers else ()

    def script(self) -> str:
        """The block as bash runs it: its `make run` line is the server the test started."""
        if self.language == "python":
            return f"\"$README_PYTHON\" - <<'README_PYTHON_BLOCK'\n{self.code}README_PYTHON_BLOCK"
        commands = self.commands()
        return "\n".join(": the test started it" if MAKE_RUN.match(c) else c for c in commands)

    def name(self) -> str:
        return f"README.md:{self.line} ({self.code.splitlines()[0][:60]})"


def assignments(words: list[str]) -> dict[str, str]:
    return dict(word.split("=", 1) for word in words)


@cache
def make_run_settings(variables: tuple[str, ...]) -> dict[str, str]:
    """The settings `make run VARIABLE=value...` starts the service with: the assignments
    before the command make says it would run (`make -n`)."""
    if not variables:
        return {}
    planned = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), "run", *variables],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k not in ("ENSEMBLE", "ENSEMBLE_FILE")},
    )
    words = shlex.split(planned.stdout.splitlines()[-1])
    return assignments(list(itertools.takewhile(ASSIGNMENT.match, words)))


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        code = "".join(f"{ln}\n" for ln in lines[index + 1 : end])
        marker = NOT_RUN.match(lines[index - 1]) if index else None
        not_run = marker.group(1) if marker else None
        blocks.append(Block(index + 1, opening.group(1), code, not_run))
        index = end + 1
    return blocks


@dataclass
class BlockRun:
    """What one block did: its exit status, output, and the HTTP status of each curl call."""

    block: Block
    exit_code: int
    stdout: str
    stderr: str
    statuses: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class StreamEvent:
    id: int
    event: str
    data: dict[str, Any]


SSE_EVENT = re.compile(r"^id: (\d+)\nevent: ([\w.]+)\ndata: (.*)$", re.M)


def streams(output: str) -> list[list[StreamEvent]]:
    """The event streams a block printed, one list per stream (each ends with done or error)."""
    found: list[list[StreamEvent]] = [[]]
    for match in SSE_EVENT.finditer(output):
        found[-1].append(StreamEvent(int(match[1]), match[2], json.loads(match[3])))
        if match[2] in ("done", "error"):
            found.append([])
    assert found[-1] == [], f"a stream did not end with done or error:\n{output}"
    return found[:-1]


def summary(stream: list[StreamEvent]) -> str:
    return "".join(e.data["message"] for e in stream if e.event == "summary.delta")


def completed(stream: list[StreamEvent], message_id: str) -> None:
    assert stream[0].event == "agent.started"
    assert stream[-1].event == "done"
    assert all(e.data["message_id"] == message_id for e in stream)


Check = Callable[[BlockRun, httpx.AsyncClient], Awaitable[None]]


@dataclass(frozen=True)
class Expected:
    """What a block promises: the HTTP statuses of its calls in order, and what it prints."""

    marker: str  # a piece of text that names the block
    statuses: list[int]
    check: Check


async def both_original_examples_stream(run: BlockRun, _client: httpx.AsyncClient) -> None:
    gravity, robot = streams(run.stdout)
    completed(gravity, "message_123")
    completed(robot, "message_123")
    for stream, question in ((gravity, "Explain gravity like I am 5"), (robot, "Build me a robot")):
        assert [e.event for e in stream[:2]] == ["agent.started", "agent.started"]
        # The mock's summary quotes each agent's opening, which names the question.
        assert summary(stream).startswith("Combining 2 answers. From llm-1:")
        assert "From llm-2:" in summary(stream)
        assert question in summary(stream)
    assert gravity[-1].data["conversation_id"] != robot[-1].data["conversation_id"]


async def health_metrics_and_readiness(run: BlockRun, _client: httpx.AsyncClient) -> None:
    health, *metrics, ready = run.stdout.splitlines()
    assert json.loads(health) == {"status": "ok"}
    assert any(line.startswith("# TYPE fanout_") for line in metrics)
    assert json.loads(ready)["status"] == "ready"


async def openapi_lists_the_paths(run: BlockRun, _client: httpx.AsyncClient) -> None:
    assert {"/api/process", "/v1/chat/completions"} <= set(json.loads(run.stdout))


async def the_openai_sdk_lists_and_streams(run: BlockRun, _client: httpx.AsyncClient) -> None:
    models, answer = run.stdout.split("\n", 1)
    assert "'default'" in models
    assert answer.startswith("Combining 2 answers.")


async def a_chat_completion(run: BlockRun, _client: httpx.AsyncClient) -> None:
    completion = json.loads(run.stdout)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"].startswith("Combining 2 answers.")


async def conversation(client: httpx.AsyncClient, conversation_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/conversations/{conversation_id}")
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


async def a_follow_up_in_the_first_answers_conversation(
    run: BlockRun, client: httpx.AsyncClient
) -> None:
    conversation_id, _ = run.stdout.split("\n", 1)
    assert re.fullmatch(r"c_[\w-]+", conversation_id)
    (follow_up,) = streams(run.stdout)
    completed(follow_up, "m-2")
    assert follow_up[-1].data["conversation_id"] == conversation_id
    # Oldest first; the blocks after this one add versions of m-2 to the same conversation.
    first, stored, *_ = (await conversation(client, conversation_id))["messages"]
    assert (first["message_id"], first["question"]) == ("m-1", "What is a star?")
    assert (stored["message_id"], stored["question"]) == ("m-2", "And a planet?")
    assert stored["parent"] == {"message_id": "m-1", "version": 1}


async def a_regenerate_then_an_edit(run: BlockRun, client: httpx.AsyncClient) -> None:
    regenerated, edited = streams(run.stdout)
    completed(regenerated, "m-2")
    completed(edited, "m-2")
    conversation_id = edited[-1].data["conversation_id"]
    messages = (await conversation(client, conversation_id))["messages"]
    versions = {m["version"]: m for m in messages if m["message_id"] == "m-2"}
    assert {n: m["question"] for n, m in versions.items()} == {
        1: "And a planet?",
        2: "And a planet?",
        3: "And a comet?",
    }
    # The edit replaces the follow-up: it follows the first message, and is the current one.
    assert versions[3]["parent"] == {"message_id": "m-1", "version": 1}
    assert versions[3]["current"] is True
    assert versions[1]["current"] is False


async def a_resume_after_event_7(run: BlockRun, _client: httpx.AsyncClient) -> None:
    story, resumed = streams(run.stdout)
    completed(story, "m-3")
    assert [e.id for e in resumed] == [e.id for e in story if e.id > 7]


async def a_key_printed_once_on_the_last_line(run: BlockRun, _client: httpx.AsyncClient) -> None:
    created, keep, key = run.stdout.splitlines()
    assert re.fullmatch(r"created key_\w+ for alice \(acme, user\)", created)
    assert keep == "keep this key: it is shown only now"
    assert re.fullmatch(r"fo_[\w-]{43}", key)


async def a_key_lets_in_and_no_key_is_a_401(run: BlockRun, _client: httpx.AsyncClient) -> None:
    (hi,) = streams(run.stdout)
    completed(hi, "m-1")
    *_, listed, revoked, refused = run.stdout.splitlines()
    key_id = listed.split()[0]
    assert re.fullmatch(r"key_\w+ +fo_[\w-]+\.\.\. +default/alice +user .* active +laptop", listed)
    assert revoked == f"revoked {key_id}"
    assert json.loads(refused)["error"]["code"] == "unauthenticated"


async def the_ensemble_state(run: BlockRun, _client: httpx.AsyncClient) -> None:
    state = json.loads(run.stdout)
    assert state["default"] == "default"
    assert state["problem"] is None


async def the_code_ensemble_answers(run: BlockRun, _client: httpx.AsyncClient) -> None:
    (review,) = streams(run.stdout)
    completed(review, "message_125")
    started = next(e for e in review if e.event == "summary.started")
    assert started.data["agents"] == ["reviewer", "tester"]


async def a_council_shows_its_steps_then_the_chairmans_reply(
    run: BlockRun, client: httpx.AsyncClient
) -> None:
    (council,) = streams(run.stdout)
    assert all(e.data["message_id"] == "message_126" for e in council)
    kinds = [e.event for e in council]
    rounds = [(e.data["phase"], e.data["round"]) for e in council if e.event == "round.started"]
    assert rounds == [("answer", 0), ("review", 1)]
    reviews = [e for e in council if e.event == "council.review"]
    assert sorted(e.data["source"] for e in reviews) == ["analyst", "skeptic", "teacher"]
    # The mock ends each review with a ranking the council can read, as the prompt asks.
    assert all(e.data["ranking"] for e in reviews)
    assert kinds.index("council.ranking") < kinds.index("summary.started")
    assert summary(council).startswith("Combining 3 answers and 3 reviews.")
    assert (council[-1].event, council[-1].data["source"]) == ("done", "chairman")
    # "a council of three: 7 per request"
    state = (await client.get("/admin/ensemble")).json()
    assert state["ensembles"]["default"]["calls_per_request"] == 7


async def an_evaluation_on_the_server(run: BlockRun, client: httpx.AsyncClient) -> None:
    progress = [
        json.loads(line.removeprefix("data: "))
        for line in run.stdout.splitlines()
        if line.startswith("data: ")
    ]
    assert [p["type"] for p in progress][-1] == "eval.ended"
    assert progress[-1]["status"] == "completed"
    state = json.loads(run.stdout.splitlines()[-1])
    assert (state["status"], state["done"], state["total"]) == ("completed", 15, 15)
    # The mock works arithmetic out: the ensemble and each of its two agents, all right.
    assert [row["score"] for row in state["report"]["rows"]] == [1.0, 1.0, 1.0]


EXPECTED = [
    Expected('"Build me a robot"', [200, 200], both_original_examples_stream),
    Expected("/healthz", [200, 200, 200], health_metrics_and_readiness),
    Expected("/openapi.json", [200], openapi_lists_the_paths),
    Expected("from openai import OpenAI", [], the_openai_sdk_lists_and_streams),
    Expected("Why is the sky blue?", [200], a_chat_completion),
    Expected("What is a star?", [200, 200], a_follow_up_in_the_first_answers_conversation),
    Expected('"regenerate":true', [200, 200], a_regenerate_then_an_edit),
    Expected("Tell me a long story", [200, 200], a_resume_after_event_7),
    Expected("--expires 30d", [], a_key_printed_once_on_the_last_line),
    Expected("--name laptop --json", [200, 401], a_key_lets_in_and_no_key_is_a_401),
    Expected("/admin/ensemble", [200], the_ensemble_state),
    Expected('"dataset":"arithmetic"', [202, 200, 200], an_evaluation_on_the_server),
    Expected('"ensemble":"code"', [200], the_code_ensemble_answers),
    Expected(
        '"message_id":"message_126"', [200], a_council_shows_its_steps_then_the_chairmans_reply
    ),
]

BLOCKS = readme_blocks(README.read_text())
TO_RUN = [block for block in BLOCKS if block.language in RUNNABLE and block.not_run is None]
SERVERS = sorted({block.settings() for block in TO_RUN})


def expected_of(block: Block) -> Expected:
    (expected,) = [e for e in EXPECTED if e.marker in block.code]
    return expected


def test_the_event_table_has_a_row_for_each_kind_naming_its_fields() -> None:
    text = README.read_text()
    table = text.split("| type | status | source | extras |\n")[1].split("\n\n")[0]
    rows = dict(EVENT_ROW.findall(table))
    assert set(rows) == set(KINDS)
    # `phase` and `round` of an agent's event in a later step are said once, below the table.
    step_fields = set(StepFields.model_fields)
    assert all(f"`{name}`" in text.split("### The event stream")[1] for name in step_fields)
    for kind, declared in KINDS.items():
        fields = set(declared.Fields.model_fields)
        if issubclass(declared.Fields, StepFields):
            fields -= step_fields
        row = rows[kind]
        unnamed = [name for name in fields if f"`{name}`" not in row and f"`{name}:" not in row]
        assert not unnamed, f"the README's row of {kind} does not name {unnamed}"


def test_every_example_is_run_or_says_why_not() -> None:
    languages = {block.language for block in BLOCKS}
    assert languages <= RUNNABLE | SHOWN_ONLY, "a block no test knows how to treat"
    not_run = [block for block in BLOCKS if block.not_run is not None]
    # Only what cannot run on a test machine: the service's own start and suite, a provider.
    assert 0 < len(not_run) <= 3
    assert all(block.language in RUNNABLE for block in not_run)
    for block in TO_RUN:
        assert len(block.servers()) <= 1, f"{block.name()} talks to one server, or to none"


def test_each_example_has_its_promise_written_down_and_each_promise_its_example() -> None:
    for block in TO_RUN:
        matching = [e.marker for e in EXPECTED if e.marker in block.code]
        assert len(matching) == 1, f"{block.name()}: expectations {matching}"
    for expected in EXPECTED:
        assert sum(expected.marker in block.code for block in TO_RUN) == 1, expected.marker


@dataclass(frozen=True)
class Installed:
    """The package as `pip install` leaves it: its console script and where it imports from."""

    prefix: Path
    site_packages: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """`pip install` of the package, into a prefix of its own, from a copy of the sources (a
    build writes into the tree it builds)."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "service", source / "service", ignore=ignore)
    prefix = work / "venv"
    # --ignore-installed: without it, pip first uninstalls the package from the environment
    # the tests run in (its editable install), and every later `python -m service` fails.
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    install += ["--ignore-installed", "--prefix"]
    done = subprocess.run([*install, str(prefix), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (site_packages,) = prefix.glob("lib/python*/site-packages")
    return Installed(prefix, site_packages)


def command_env(installed: Installed) -> dict[str, str]:
    return service_env(PYTHONPATH=str(installed.site_packages))


def test_pip_install_gives_the_llm_fanout_command_and_it_makes_a_key(
    installed: Installed, tmp_path: Path
) -> None:
    command = installed.prefix / "bin" / "llm-fanout"
    made = subprocess.run(
        [command, "keys", "create", "--user", "alice"],
        cwd=tmp_path,
        env=command_env(installed),
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[-1].startswith("fo_")


def test_a_mistyped_command_is_answered_with_the_usage_of_llm_fanout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["keys", "make"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("usage: llm-fanout keys ")


def a_clone(tmp_path: Path, installed: Installed) -> Path:
    """A working directory as after `make run` in a clone: examples/ and .venv/bin/llm-fanout,
    and a curl that reports each answer's status on stderr."""
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "examples").symlink_to(ROOT / "examples")
    (clone / ".venv").symlink_to(installed.prefix)
    curl = shutil.which("curl")
    assert curl is not None, "the README's examples need curl"
    tools = tmp_path / "tools"
    tools.mkdir()
    recorder = tools / "curl"
    report = r"%{stderr}readme-example: HTTP %{http_code} %{method} %{url_effective}\n"
    recorder.write_text(f'#!/bin/bash\nexec {shlex.quote(curl)} -w {shlex.quote(report)} "$@"\n')
    recorder.chmod(0o755)
    return clone


def session_script(blocks: list[Block], url: str, outputs: Path) -> str:
    """One bash session: each block in turn (in the session's own shell, so what it sets
    stays set), its output and exit status kept apart from the others'."""
    address = url.removeprefix("http://")
    parts = []
    for number, block in enumerate(blocks):
        code = block.script().replace("localhost:8080", address)
        out, err = outputs / f"{number}.out", outputs / f"{number}.err"
        parts.append(f"{{\n{code}\n}} >{out} 2>{err}\necho $? >{outputs / f'{number}.exit'}\n")
    return "".join(parts)


@pytest.mark.parametrize(
    "settings",
    SERVERS,
    ids=[" ".join(f"{k}={v}" for k, v in s) or "defaults" for s in SERVERS],
)
async def test_the_readme_examples_run_as_written(
    settings: tuple[tuple[str, str], ...], installed: Installed, tmp_path: Path
) -> None:
    blocks = [block for block in TO_RUN if block.settings() == settings]
    clone = a_clone(tmp_path, installed)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    env = command_env(installed)
    env |= {"PATH": f"{tmp_path / 'tools'}:{env['PATH']}", "README_PYTHON": sys.executable}
    async with served(clone, **dict(settings)) as service:
        script = session_script(blocks, service.url, outputs)
        with trio.fail_after(90):
            await trio.run_process(["bash", "-c", script], cwd=clone, env=env, check=False)
        async with httpx.AsyncClient(base_url=service.url) as client:
            for number, block in enumerate(blocks):
                stderr = (outputs / f"{number}.err").read_text()
                run = BlockRun(
                    block=block,
                    exit_code=int((outputs / f"{number}.exit").read_text()),
                    stdout=(outputs / f"{number}.out").read_text(),
                    stderr=STATUS_LINE.sub("", stderr).strip(),
                    statuses=[int(status) for status, _, _ in STATUS_LINE.findall(stderr)],
                )
                expected = expected_of(block)
                said = f"{block.name()}:\n{run.stdout}\n{run.stderr}"
                assert run.exit_code == 0, said
                assert run.statuses == expected.statuses, said
                await expected.check(run, client)
