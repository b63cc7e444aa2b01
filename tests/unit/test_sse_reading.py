"""Reading an upstream's server-sent events from the bytes as they arrive: whatever way the
provider ends its lines and however the network cuts its body, each event's data comes out
once and whole."""

from __future__ import annotations

import pytest

from service.llm.openai_model import _SSEData

BODY = b'data: {"a": 1}\n\n: keep-alive\n\nevent: x\nid: 7\ndata: line one\ndata: line two\n\n'
EVENTS = [b'{"a": 1}', b"line one\nline two"]


def read(body: bytes, cut: int) -> list[bytes]:
    """The events of `body` fed in pieces of `cut` bytes."""
    events = _SSEData()
    found: list[bytes] = []
    for at in range(0, len(body), cut):
        found += events.feed(body[at : at + cut])
    return found


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("cut", [1, 2, 3, 7, 1000])
def test_every_event_comes_out_once_whatever_the_line_ends_and_the_cuts(
    ending: bytes, cut: int
) -> None:
    assert read(BODY.replace(b"\n", ending), cut) == EVENTS


def test_a_field_without_its_space_and_an_unfinished_event_at_the_end() -> None:
    assert read(b"data:{}\n\ndata: half", 4) == [b"{}"]
