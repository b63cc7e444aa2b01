"""What the fuzzer (test_fuzz.py) found, each pinned as a plain test: the answer it got,
and the one it gets now."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.auth.test_access import make_key
from tests.integration.harness import RunningService, running_service


def error_of(response_json: dict[str, dict[str, str]]) -> tuple[str, str]:
    return response_json["error"]["code"], response_json["error"]["field"]


async def test_a_key_that_would_expire_past_the_year_9999_is_a_400_not_a_500(
    tmp_path: Path,
) -> None:
    """Was: OverflowError adding 999999 weeks to now, a 500."""
    async with running_service(tmp_path, None, env={"AUTH": "keys"}) as service:
        key, _ = await make_key(service, "admin", user="root", role="admin")
        headers = {"Authorization": f"Bearer {key}"}
        too_far = await service.client.post(
            "/admin/keys", json={"user": "x", "expires": "999999w"}, headers=headers
        )
        far = await service.client.post(
            "/admin/keys", json={"user": "x", "expires": "99999w"}, headers=headers
        )
        zero = await service.client.post(
            "/admin/keys", json={"user": "x", "expires": "0d"}, headers=headers
        )
    assert too_far.status_code == 400
    assert error_of(too_far.json()) == ("invalid_request", "expires")
    assert "expected a number and a unit" in too_far.json()["error"]["message"]
    assert far.status_code == 201
    assert far.json()["expires_at"].startswith("3")  # about 1,900 years from now
    assert zero.status_code == 400


async def test_a_last_event_id_that_is_a_digit_but_no_number_is_a_400(tmp_path: Path) -> None:
    """Was: "²" passed str.isdigit() and int() raised, a 500. An empty one is no id."""
    async with running_service(tmp_path, None) as service:
        await service.client.post("/api/process", json={"message": "Hi?", "message_id": "m-1"})
        superscript = await service.client.get(
            "/api/messages/m-1/events", headers={"Last-Event-ID": "²".encode()}
        )
        empty = await service.client.get("/api/messages/m-1/events", headers={"Last-Event-ID": ""})
    assert superscript.status_code == 400
    assert error_of(superscript.json()) == ("invalid_request", "Last-Event-ID")
    assert empty.status_code == 200
    assert "event: done" in empty.text


async def test_a_last_event_id_past_the_largest_is_a_400_header_or_query(
    tmp_path: Path,
) -> None:
    """Was: with the header given, the query's `last_event_id` was not read at all, so one
    past its documented maximum was a 200."""
    async with running_service(tmp_path, None) as service:
        await service.client.post("/api/process", json={"message": "Hi?", "message_id": "m-1"})
        events = "/api/messages/m-1/events"
        both = await service.client.get(
            f"{events}?last_event_id=66630587294615627211", headers={"Last-Event-ID": "3"}
        )
        header = await service.client.get(events, headers={"Last-Event-ID": "1000000000"})
        largest = await service.client.get(events, headers={"Last-Event-ID": "999999999"})
    assert both.status_code == 400
    assert error_of(both.json()) == ("invalid_request", "last_event_id")
    assert header.status_code == 400
    assert error_of(header.json()) == ("invalid_request", "Last-Event-ID")
    assert largest.status_code == 200


async def test_a_query_parameter_given_twice_is_a_400(tmp_path: Path) -> None:
    """Was: the first of them silently counted."""
    async with running_service(tmp_path, None) as service:
        twice = await service.client.get("/api/conversations?limit=1&limit=2")
        unknown_twice = await service.client.get("/api/conversations?colour=1&colour=2")
    assert twice.status_code == 400
    assert twice.json()["error"] == {
        "code": "invalid_request",
        "message": "limit: given more than once",
        "field": "limit",
    }
    assert unknown_twice.status_code == 200  # unknown parameters are ignored, as before


async def test_any_well_formed_cursor_is_a_position_and_others_are_a_400(tmp_path: Path) -> None:
    """Was: a cursor was opaque base64 JSON, so a string of the documented type was a 400."""
    async with running_service(tmp_path, None) as service:
        for number in range(3):
            await service.client.post(
                "/api/process", json={"message": "Hi?", "message_id": f"m-{number}"}
            )
        first = (await service.client.get("/api/conversations?limit=2")).json()
        rest = (
            await service.client.get(f"/api/conversations?limit=2&cursor={first['next_cursor']}")
        ).json()
        far_past = await service.client.get("/api/conversations?cursor=1.x")
        far_future = await service.client.get("/api/conversations?cursor=9999999999999999.%25")
        bad = await service.client.get("/api/conversations?cursor=abc")
    assert len(first["conversations"]) == 2
    assert len(rest["conversations"]) == 1
    assert rest["next_cursor"] is None
    assert far_past.status_code == 200
    assert far_past.json()["conversations"] == []
    assert len(far_future.json()["conversations"]) == 3
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "cursor: not a cursor this server gave"


@pytest.mark.parametrize("blank", [" ", "\u3000", "\x1c\n", "\u2028"])
async def test_a_message_of_only_white_space_is_a_400(tmp_path: Path, blank: str) -> None:
    async with running_service(tmp_path, None) as service:
        response = await service.client.post(
            "/api/process", json={"message": blank, "message_id": "m-1"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "message: must not be blank"


async def test_an_unknown_ensemble_is_a_404_naming_the_field(tmp_path: Path) -> None:
    """Was: a 400, though the name was well formed: it names nothing, like a wrong id."""
    async with running_service(tmp_path, None) as service:
        response = await service.client.post(
            "/api/process", json={"message": "Hi?", "message_id": "m-1", "ensemble": "x"}
        )
    assert response.status_code == 404
    assert error_of(response.json()) == ("ensemble_not_found", "ensemble")


async def unidentified(service: RunningService, method: str, path: str) -> int:
    return (await service.client.request(method, path)).status_code


async def test_a_method_an_open_route_does_not_take_is_a_405_even_unidentified(
    tmp_path: Path,
) -> None:
    """Was: a 401 asking for a key, on routes that need none."""
    async with running_service(tmp_path, None, env={"AUTH": "keys"}) as service:
        statuses = {
            path: await unidentified(service, "TRACE", path)
            for path in ("/healthz", "/docs", "/", "/api/conversations", "/no/such/route")
        }
    # A guarded route, or none at all, still tells an unidentified caller nothing.
    assert statuses == {
        "/healthz": 405,
        "/docs": 405,
        "/": 405,
        "/api/conversations": 401,
        "/no/such/route": 401,
    }
