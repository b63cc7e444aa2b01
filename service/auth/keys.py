"""API keys: how one looks, how it is made, and what is kept of it.

key = new_key()          # "fo_" and 43 characters: 256 random bits, shown once
key_hash(key)            # what the database keeps (SHA-256), with the display prefix
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from ..principal import SCOPES, Role
from ..storage.keys import KeyRecord, create_key

KEY_PREFIX = "fo_"
# What a person recognises a key by in listings and logs: never enough to use it.
DISPLAY_CHARS = 10
# A whole number of units, not zero, at most five digits (99999w ends before the year
# 9999, the last a date can hold): `30d`.
DURATION_PATTERN = r"^0*([1-9][0-9]{0,4})([smhdw])$"
_DURATION = re.compile(DURATION_PATTERN)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_CHARS]


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `45s`; ValueError otherwise."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r}: expected a number and a unit, e.g. 30d, 12h, 90m")
    return timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])


def issue_key(
    connection: Connection,
    *,
    user: str,
    tenant: str,
    role: Role,
    scopes: frozenset[str],
    expires_in: timedelta | None,
    name: str | None,
) -> tuple[str, KeyRecord]:
    """Make a key and store what is kept of it. The key is returned once, here, and never
    again: the database holds its hash."""
    unknown = scopes - SCOPES
    if unknown:
        names = ", ".join(sorted(unknown))
        raise ValueError(f"unknown scope(s) {names} (known: process, history, admin)")
    for label, value in (("user", user), ("tenant", tenant)):
        if not 1 <= len(value) <= 128:
            raise ValueError(f"{label}: must be 1 to 128 characters")
    key = new_key()
    expires_at = datetime.now(UTC) + expires_in if expires_in is not None else None
    record = create_key(
        connection,
        key_id=new_key_id(),
        prefix=display_prefix(key),
        key_hash=key_hash(key),
        tenant=tenant,
        user=user,
        role=role,
        scopes=scopes or SCOPES,
        name=name,
        expires_at=expires_at,
    )
    return key, record
