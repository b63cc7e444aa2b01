"""API keys over HTTP, for admins, within their own tenant: POST /admin/keys (the key is in
the answer, once), GET /admin/keys, DELETE /admin/keys/{id}."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, Response, request

from ...auth.keys import DURATION_PATTERN, issue_key, parse_duration
from ...errors import InvalidRequest, NotFound
from ...storage.keys import list_keys, revoke_key
from ..access import current_principal, requires
from ..contract import schemas
from ..contract.document import documented, empty, link, returns
from ..contract.empty import no_content
from ..contract.schemas import respond
from ..contract.validation import NO_NUL, ClientId, checked_id, first_problem
from .conversations import store

key_routes = Blueprint("keys", __name__)


class NewKey(BaseModel):
    """A key for a user of the admin's own tenant."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user: ClientId
    role: Literal["user", "admin"] = "user"
    scopes: list[Literal["process", "history", "admin"]] = Field(default_factory=list)
    expires: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How long it lasts: `30d`, `12h`, `90m`; none, for ever",
    )
    name: str | None = Field(default=None, max_length=128, pattern=NO_NUL)


@key_routes.post("/admin/keys")
@requires("admin")
@documented(
    "Make an API key for a user of your tenant: the key is in this answer, once",
    tag="admin",
    body=NewKey,
    replies={
        201: returns(
            schemas.NewKeyCreated,
            links={"RevokeKey": link("keys_revoke", "Revoke it", key_id="$response.body#/id")},
        )
    },
    errors=(404, 503),
)
async def create() -> tuple[dict[str, Any], int]:
    try:
        body = NewKey.model_validate_json(await request.get_data(as_text=False) or b"{}")
    except ValidationError as exc:
        raise first_problem(exc) from exc
    try:
        expires_in = parse_duration(body.expires) if body.expires is not None else None
    except ValueError as exc:
        raise InvalidRequest(f"expires: {exc}", field="expires") from exc
    tenant = current_principal().tenant
    key, record = await store().write_once(
        lambda connection: issue_key(
            connection,
            user=body.user,
            tenant=tenant,
            role=body.role,
            scopes=frozenset(body.scopes),
            expires_in=expires_in,
            name=body.name,
        )
    )
    created = schemas.NewKeyCreated(key=key, **schemas.Key.of(record).model_dump())
    return respond(created), 201


@key_routes.get("/admin/keys")
@requires("admin")
@documented(
    "The keys of your tenant (never the keys themselves)",
    tag="admin",
    replies={200: returns(schemas.KeyList)},
    errors=(404, 503),
)
async def listed() -> dict[str, Any]:
    tenant = current_principal().tenant
    records = await store().read(lambda connection: list_keys(connection, tenant=tenant))
    return respond(schemas.KeyList(keys=[schemas.Key.of(record) for record in records]))


@key_routes.delete("/admin/keys/<key_id>")
@requires("admin")
@documented(
    "Revoke a key of your tenant: it stops working within AUTH_CACHE_S",
    tag="admin",
    replies={204: empty("Revoked")},
    errors=(400, 404, 503),
)
async def revoke(key_id: str) -> Response:
    checked_id(key_id, "key_id")
    tenant = current_principal().tenant
    found = await store().write_once(
        lambda connection: revoke_key(connection, key_id=key_id, tenant=tenant)
    )
    if not found:
        raise NotFound("no such key")
    return no_content()
