"""Token usage: GET /api/usage (the caller's own, by day and model) and GET /admin/usage
(an admin's tenant: `?user=&from=&to=`, days as YYYY-MM-DD, inclusive). With PRICES_FILE
each line also has its `cost`."""

from __future__ import annotations

from datetime import date
from typing import Any

from quart import Blueprint, current_app, request

from ..errors import InvalidRequest
from ..resources import Resources
from .access import current_principal, requires
from .conversations import checked_id, store

usage_routes = Blueprint("usage", __name__)


def _day(name: str) -> str | None:
    value = request.args.get(name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidRequest(f"{name}: expected a day, YYYY-MM-DD", field=name) from None


async def _report(user: str | None) -> dict[str, Any]:
    resources: Resources = current_app.extensions["fanout"]
    lines = await store().usage(
        current_principal(), user=user, since=_day("from"), until=_day("to")
    )
    if resources.prices is not None:
        for line in lines:
            price = resources.prices.get(line["model"])
            line["cost"] = (
                price.cost(line["prompt_tokens"], line["completion_tokens"]) if price else None
            )
    return {
        "usage": lines,
        "total": {
            name: sum(line[name] for line in lines)
            for name in ("calls", "prompt_tokens", "completion_tokens")
        },
    }


@usage_routes.get("/api/usage")
@requires("history")
async def own_usage() -> dict[str, Any]:
    return await _report(current_principal().user)


@usage_routes.get("/admin/usage")
@requires("admin")
async def tenant_usage() -> dict[str, Any]:
    user = request.args.get("user")
    return await _report(checked_id(user, "user") if user is not None else None)
