"""What a client writes in a header comes back in one only when it is safe there.

Hypothesis draws the values (any bytes a client can send in a header: visible ASCII, bytes
above 0x7F, spaces and tabs inside); the rules are written here as docs/security.md states
them, not imported from the service.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile.test_id_round_trip import FAST_MOCK, PROPERTY, QUESTION, events
from tests.integration.harness import running_service

# Every byte h11 lets a client put in a header's value (a tab, the space, visible ASCII and
# the bytes above 0x7F), spaces and tabs inside only; ASCII's visible range made likely.
_LEGAL = bytes([0x09, 0x20, *range(0x21, 0x7F), *range(0x80, 0x100)])
HEADER_VALUES = st.lists(st.sampled_from(_LEGAL) | st.integers(0x21, 0x7E), max_size=140).map(
    lambda values: bytes(values).strip(b" \t")
)
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
NEW_REQUEST_ID = re.compile(r"[0-9a-f]{16}")
PRINTABLE = re.compile(r"[\x20-\x7e]*")


async def test_any_x_request_id_is_echoed_only_when_sane(tmp_path: Path) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:

        def in_thread() -> None:
            with httpx.Client(base_url=service.url, timeout=10) as client:

                @PROPERTY
                @given(value=HEADER_VALUES | st.from_regex(rb"\A[A-Za-z0-9._:-]{1,130}\Z"))
                def echoed(value: bytes) -> None:
                    response = client.get("/healthz", headers={"X-Request-Id": value})
                    assert response.status_code == 200, response.text
                    given_back = response.headers["X-Request-Id"]
                    assert PRINTABLE.fullmatch(given_back)
                    if SANE_REQUEST_ID.fullmatch(value):
                        assert given_back == value.decode()
                    else:
                        assert NEW_REQUEST_ID.fullmatch(given_back), given_back

                echoed()

        await trio.to_thread.run_sync(in_thread)


async def test_any_last_event_id_is_refused_or_resumes_after_it(tmp_path: Path) -> None:
    """`Last-Event-ID`: an event id (digits, at most nine), or empty as EventSource sends
    after a reset, resumes after it; anything else is a 400 naming the header."""
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:

        def in_thread() -> None:
            with httpx.Client(base_url=service.url, timeout=10) as client:
                sent = client.post("/api/process", json={"message": QUESTION, "message_id": "m"})
                assert sent.status_code == 200, sent.text
                ids = [int(line[4:]) for line in sent.text.split("\n") if line.startswith("id: ")]
                whole = events(sent.text)
                assert len(ids) == len(whole) > 1

                @PROPERTY
                @given(value=HEADER_VALUES | st.integers(0, 10**10).map(lambda n: b"%d" % n))
                def resumed(value: bytes) -> None:
                    response = client.get(
                        "/api/messages/m/events", headers={"Last-Event-ID": value}
                    )
                    if not re.fullmatch(rb"[0-9]{0,9}", value):
                        assert response.status_code == 400, response.text
                        assert response.json()["error"]["field"] == "Last-Event-ID"
                        return
                    assert response.status_code == 200, response.text
                    after = int(value or b"0")
                    assert events(response.text) == [
                        event
                        for event_id, event in zip(ids, whole, strict=True)
                        if event_id > after
                    ]

                resumed()

        await trio.to_thread.run_sync(in_thread)
