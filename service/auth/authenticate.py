"""One request's credentials to a `Principal`: an API key (`Authorization: Bearer fo_...` or
`X-API-Key`) or a JWT, per AUTH.

Key lookups are cached for AUTH_CACHE_S, refusals too, so a revoked key stops working on
every instance within that bound. A key's `last_used_at` is written at most once a minute.

    authenticator = Authenticator(settings, store, tokens)
    principal = await authenticator.principal_for(token)     # or raises Unauthenticated
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import trio

from ..principal import ANONYMOUS, Principal
from ..settings import Settings
from ..storage import Store
from ..storage.keys import KeyRecord, find_key_by_hash, touch_key
from .errors import Unauthenticated
from .keys import key_hash, looks_like_key

if TYPE_CHECKING:  # PyJWT and cryptography load only when AUTH names jwt
    from .tokens import TokenVerifier

log = logging.getLogger(__name__)

CACHE_MAX = 10_000
TOUCH_EVERY_S = 60.0


class Authenticator:
    def __init__(
        self, settings: Settings, store: Store | None, tokens: TokenVerifier | None
    ) -> None:
        self.modes = settings.auth_modes
        self._cache_s = settings.auth_cache_s
        self._store = store
        self.tokens = tokens
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._touched: dict[str, float] = {}
        # Where `last_used_at` writes run, off the request's path; set while serving.
        self.background: trio.Nursery | None = None

    @property
    def anonymous(self) -> bool:
        return not self.modes

    async def principal_for(self, token: str | None) -> Principal:
        if self.anonymous:
            return ANONYMOUS
        if not token:
            raise Unauthenticated("no credentials")
        if "keys" in self.modes and looks_like_key(token):
            return await self._key_principal(token)
        if "jwt" in self.modes and self.tokens is not None:
            return await self.tokens.principal_for(token)
        raise Unauthenticated("credentials of a kind AUTH does not accept")

    async def _key_principal(self, token: str) -> Principal:
        hashed = key_hash(token)
        record = await self._lookup(hashed)
        now = datetime.now(UTC)
        if record is None:
            raise Unauthenticated("no such key")
        if record.revoked_at is not None:
            raise Unauthenticated(f"key {record.id} is revoked")
        if not record.usable(now):
            raise Unauthenticated(f"key {record.id} expired")
        self._touch(record)
        return Principal(
            user=record.user,
            tenant=record.tenant,
            role="admin" if record.role == "admin" else "user",
            scopes=record.scopes,
            key_id=record.id,
        )

    async def _lookup(self, hashed: str) -> KeyRecord | None:
        cached = self._cache.get(hashed)
        if cached is not None and cached[0] > trio.current_time():
            return cached[1]
        assert self._store is not None  # AUTH=keys needs storage (checked at start)
        store = self._store
        record = await store.read(lambda connection: find_key_by_hash(connection, hashed))
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[hashed] = (trio.current_time() + self._cache_s, record)
        return record

    def _touch(self, record: KeyRecord) -> None:
        now = trio.current_time()
        if self.background is None or now - self._touched.get(record.id, -TOUCH_EVERY_S) < (
            TOUCH_EVERY_S
        ):
            return
        self._touched[record.id] = now
        store = self._store
        assert store is not None
        at = datetime.now(UTC)
        self.background.start_soon(
            store.write, f"key {record.id} last use", lambda c: touch_key(c, record.id, at)
        )
