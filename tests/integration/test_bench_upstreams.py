"""The benchmark's lean upstreams, run as the benchmark runs them: their own processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from scripts.bench.instant_upstream import TOKENS
from scripts.bench.processes import started
from scripts.bench.scenarios import _open_stream, _process_request, _status
from service.llm import ChatMessage, ChatRequest
from service.llm.openai_model import OpenAIChatModel
from tests.integration.harness import host_port

QUESTION = (ChatMessage("user", "hello there"),)


async def test_the_instant_upstream_answers_the_sdk_plainly_and_streamed(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "scripts.bench.instant_upstream"]
    async with started(argv, {}, tmp_path / "instant.log") as upstream:
        model = OpenAIChatModel(base_url=f"{upstream.url}/v1", api_key="", timeout_s=10)
        try:
            completion = await model.complete(ChatRequest("any", QUESTION, caller="t"))
            assert completion.text == "A short answer."
            async with model.stream(ChatRequest("any", QUESTION, caller="t")) as stream:
                # Pieces as they came off the socket: one per read, not one per chunk.
                assert "".join([text async for text in stream]) == "".join(TOKENS)
            assert stream.usage is not None
            assert stream.usage.completion_tokens == len(TOKENS)
        finally:
            await model.aclose()


async def test_the_stall_server_holds_calls_and_notes_when_each_closes(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "scripts.bench.stall_server"]
    async with started(argv, {}, tmp_path / "stall.log") as upstream:
        chat = b'{"model": "m", "messages": [{"role": "user", "content": "storm 7"}]}'
        head = f"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: {len(chat)}\r\n\r\n"
        stream = await trio.open_tcp_stream(*host_port(upstream.url))
        await stream.send_all(head.encode() + chat)
        with trio.fail_after(5):
            while (await _status(upstream.url))["open"] != 1:  # noqa: ASYNC110
                await trio.sleep(0.05)
        await stream.aclose()
        with trio.fail_after(5):
            while not (status := await _status(upstream.url))["closed"]:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert status["open"] == 0
        [(message, closed_at)] = status["closed"]
        assert message == "storm 7"
        assert closed_at > 0


async def test_a_bench_client_sees_the_services_refusal(tmp_path: Path) -> None:
    # The open-streams scenario counts a refused stream by its status line.
    argv = [sys.executable, "-m", "scripts.bench.instant_upstream"]
    async with started(argv, {}, tmp_path / "instant.log") as upstream:
        with pytest.raises(ValueError, match=r"^HTTP/1\.1 404"):
            await _open_stream(upstream.url, "hello")
    assert _process_request("hi").startswith(b"POST /api/process HTTP/1.1\r\n")
