"""API keys in the database: created, listed, revoked, and found by their hash.

The key itself is never stored: only its SHA-256 (a key has 256 random bits, so a plain
hash cannot be reversed by guessing) and a display prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from .queries import as_utc, now
from .schema import api_keys


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    prefix: str
    tenant: str
    user: str
    role: str
    scopes: frozenset[str]
    name: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def usable(self, at: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or at < self.expires_at)


def _record(row: Any) -> KeyRecord:
    def when(value: datetime | None) -> datetime | None:
        return as_utc(value) if value is not None else None

    return KeyRecord(
        id=row.id,
        prefix=row.prefix,
        tenant=row.tenant,
        user=row.user,
        role=row.role,
        scopes=frozenset(row.scopes.split()),
        name=row.name,
        created_at=as_utc(row.created_at),
        expires_at=when(row.expires_at),
        revoked_at=when(row.revoked_at),
        last_used_at=when(row.last_used_at),
    )


def create_key(
    connection: Connection,
    *,
    key_id: str,
    prefix: str,
    key_hash: str,
    tenant: str,
    user: str,
    role: str,
    scopes: frozenset[str],
    name: str | None,
    expires_at: datetime | None,
) -> KeyRecord:
    created = now()
    connection.execute(
        insert(api_keys).values(
            id=key_id,
            prefix=prefix,
            hash=key_hash,
            tenant=tenant,
            user=user,
            role=role,
            scopes=" ".join(sorted(scopes)),
            name=name,
            created_at=created,
            expires_at=expires_at,
        )
    )
    found = find_key(connection, key_id=key_id, tenant=tenant)
    assert found is not None
    return found


def find_key_by_hash(connection: Connection, key_hash: str) -> KeyRecord | None:
    row = connection.execute(select(api_keys).where(api_keys.c.hash == key_hash)).first()
    return _record(row) if row is not None else None


def find_key(connection: Connection, *, key_id: str, tenant: str | None) -> KeyRecord | None:
    """The key `key_id`, if it belongs to `tenant` (None: any tenant, for the command line)."""
    query = select(api_keys).where(api_keys.c.id == key_id)
    if tenant is not None:
        query = query.where(api_keys.c.tenant == tenant)
    row = connection.execute(query).first()
    return _record(row) if row is not None else None


def list_keys(connection: Connection, *, tenant: str | None) -> list[KeyRecord]:
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if tenant is not None:
        query = query.where(api_keys.c.tenant == tenant)
    return [_record(row) for row in connection.execute(query)]


def revoke_key(connection: Connection, *, key_id: str, tenant: str | None) -> bool:
    """Revoke the key (in `tenant`, unless None); False if there is no such key."""
    query = update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=now())
    if tenant is not None:
        query = query.where(api_keys.c.tenant == tenant)
    query = query.where(api_keys.c.revoked_at.is_(None))
    if connection.execute(query).rowcount:
        return True
    return find_key(connection, key_id=key_id, tenant=tenant) is not None


def touch_key(connection: Connection, key_id: str, at: datetime) -> None:
    connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=at))
