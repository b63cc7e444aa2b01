"""API keys over HTTP, for admins, within their own tenant: POST /admin/keys (the key is in
the answer, once), GET /admin/keys, DELETE /admin/keys/{id}."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, Response, request

from ..auth.keys import issue_key, parse_duration
from ..errors import InvalidRequest, NotFound
from ..storage.keys import KeyRecord, list_keys, revoke_key
from .access import current_principal, requires
from .conversations import checked_id, store
from .empty import no_content

key_routes = Blueprint("keys", __name__)


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user: str = Field(min_length=1, max_length=128)
    role: Literal["user", "admin"] = "user"
    scopes: list[Literal["process", "history", "admin"]] = Field(default_factory=list)
    expires: str | None = None
    name: str | None = Field(default=None, max_length=128)


def key_json(record: KeyRecord) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": record.id,
        "prefix": record.prefix,
        "user": record.user,
        "tenant": record.tenant,
        "role": record.role,
        "scopes": sorted(record.scopes),
        "name": record.name,
        "created_at": when(record.created_at),
        "expires_at": when(record.expires_at),
        "revoked_at": when(record.revoked_at),
        "last_used_at": when(record.last_used_at),
    }


@key_routes.post("/admin/keys")
@requires("admin")
async def create() -> tuple[dict[str, Any], int]:
    try:
        body = NewKey.model_validate_json(await request.get_data(as_text=False) or b"{}")
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        raise InvalidRequest(
            f"{field}: {error['msg']}" if field else error["msg"], field=field
        ) from exc
    try:
        expires_in = parse_duration(body.expires) if body.expires is not None else None
    except ValueError as exc:
        raise InvalidRequest(f"expires: {exc}", field="expires") from exc
    tenant = current_principal().tenant
    key, record = await store().read(
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
    return {"key": key, **key_json(record)}, 201


@key_routes.get("/admin/keys")
@requires("admin")
async def listed() -> dict[str, Any]:
    tenant = current_principal().tenant
    records = await store().read(lambda connection: list_keys(connection, tenant=tenant))
    return {"keys": [key_json(record) for record in records]}


@key_routes.delete("/admin/keys/<key_id>")
@requires("admin")
async def revoke(key_id: str) -> Response:
    checked_id(key_id, "key_id")
    tenant = current_principal().tenant
    found = await store().read(
        lambda connection: revoke_key(connection, key_id=key_id, tenant=tenant)
    )
    if not found:
        raise NotFound("no such key")
    return no_content()
