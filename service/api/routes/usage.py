"""Token usage: GET /api/usage (the caller's own, by day and model) and GET /admin/usage
(an admin's tenant: `?user=&from=&to=`, days as YYYY-MM-DD, inclusive). Each line has its
`cost_usd` (priced when its runs ended); with PRICES_FILE also its `cost` (deprecated)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app

from ...resources import Resources
from ..access import current_principal, requires
from ..contract import schemas
from ..contract.document import documented, returns
from ..contract.schemas import read_query, respond
from .conversations import store

usage_routes = Blueprint("usage", __name__)


async def _report(user: str | None, query: schemas.UsageQuery) -> dict[str, Any]:
    resources: Resources = current_app.extensions["fanout"]
    lines = await store().usage(current_principal(), user=user, since=query.from_, until=query.to)
    for line in lines:
        price = resources.prices.get(line["model"]) if resources.prices is not None else None
        line["cost"] = (
            price.cost(line["prompt_tokens"], line["completion_tokens"]) if price else None
        )
    total: dict[str, Any] = {
        name: sum(line[name] for line in lines)
        for name in ("calls", "prompt_tokens", "completion_tokens")
    }
    costs = [line["cost_usd"] for line in lines]
    total["cost_usd"] = None if None in costs else round(sum(c or 0.0 for c in costs), 8)
    return respond(schemas.UsageReport.model_validate({"usage": lines, "total": total}))


@usage_routes.get("/api/usage")
@requires("history")
@documented(
    "Your token usage and its dollars, by day and model",
    tag="usage",
    query=schemas.UsageQuery,
    replies={200: returns(schemas.UsageReport)},
    errors=(400, 404, 503),
)
async def own_usage() -> dict[str, Any]:
    return await _report(current_principal().user, read_query(schemas.UsageQuery))


@usage_routes.get("/admin/usage")
@requires("admin")
@documented(
    "Your tenant's token usage and its dollars, by day, user and model",
    tag="usage",
    query=schemas.TenantUsageQuery,
    replies={200: returns(schemas.UsageReport)},
    errors=(400, 404, 503),
)
async def tenant_usage() -> dict[str, Any]:
    query = read_query(schemas.TenantUsageQuery)
    return await _report(query.user, query)
