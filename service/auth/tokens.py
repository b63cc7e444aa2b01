"""JWTs from an OIDC provider (or signed with a key or secret of the operator's), checked
with PyJWT: signature, `exp` / `nbf` with a small leeway, issuer, audience, and an
algorithm allow-list (never `none`, never HMAC when the key is a public one).

Keys come from JWT_JWKS_URL, fetched with httpx at start and every JWT_JWKS_REFRESH_S in
the background; a token naming a `kid` not seen yet fetches it again, at most once per
JWT_JWKS_MIN_REFETCH_S. If the JWKS cannot be fetched, the keys already known keep working.

    verifier = TokenVerifier.from_settings(settings)
    principal = await verifier.principal_for(token)     # or raises Unauthenticated
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
import trio

from ..settings import Settings
from .errors import Unauthenticated
from .principal import DEFAULT_TENANT, Principal

log = logging.getLogger(__name__)

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
SYMMETRIC = ("HS256", "HS384", "HS512")
JWKS_TIMEOUT_S = 5.0


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (`realm_access.roles`), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


class TokenVerifier:
    def __init__(
        self,
        *,
        algorithms: tuple[str, ...],
        static_key: Any | None,
        jwks_url: str | None,
        issuer: str | None,
        audience: str | None,
        tenant_claim: str | None,
        roles_claim: str | None,
        admin_role: str,
        leeway_s: float,
        refresh_s: float,
        min_refetch_s: float,
    ) -> None:
        self.algorithms = algorithms
        self._static_key = static_key
        self._jwks_url = jwks_url
        self._issuer = issuer
        self._audience = audience
        self._tenant_claim = tenant_claim
        self._roles_claim = roles_claim
        self._admin_role = admin_role
        self._leeway_s = leeway_s
        self._refresh_s = refresh_s
        self._min_refetch_s = min_refetch_s
        self._keys: dict[str, Any] = {}
        self._last_fetch = -float("inf")
        self._fetching = trio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        static_key: Any | None = None
        algorithms: tuple[str, ...] = ASYMMETRIC
        if settings.jwt_secret is not None:
            static_key = settings.jwt_secret.get_secret_value()
            algorithms = SYMMETRIC
        elif settings.jwt_public_key is not None:
            text = settings.jwt_public_key
            if not text.lstrip().startswith("-----BEGIN"):
                text = Path(text).read_text()
            static_key = text
        return cls(
            algorithms=algorithms,
            static_key=static_key,
            jwks_url=settings.jwt_jwks_url,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            tenant_claim=settings.jwt_tenant_claim,
            roles_claim=settings.jwt_roles_claim,
            admin_role=settings.jwt_admin_role,
            leeway_s=settings.jwt_leeway_s,
            refresh_s=settings.jwt_jwks_refresh_s,
            min_refetch_s=settings.jwt_jwks_min_refetch_s,
        )

    async def keep_fresh(self) -> None:
        """Fetch the JWKS now and every JWT_JWKS_REFRESH_S, until cancelled."""
        if self._jwks_url is None:
            return
        while True:
            await self._fetch()
            await trio.sleep(self._refresh_s)

    async def _fetch(self) -> None:
        async with self._fetching:
            self._last_fetch = trio.current_time()
            try:
                async with httpx.AsyncClient(timeout=JWKS_TIMEOUT_S) as client:
                    response = await client.get(self._jwks_url or "")
                    response.raise_for_status()
                    keys = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                log.warning(
                    "could not fetch the JWKS (%s); keeping %d key(s)", exc, len(self._keys)
                )
                return
            self._keys = {key.key_id: key.key for key in keys.keys if key.key_id}

    async def _key_for(self, kid: str | None) -> Any:
        if self._static_key is not None:
            return self._static_key
        if kid is None:
            raise Unauthenticated("the token names no key (kid)")
        if kid not in self._keys:
            with trio.move_on_after(JWKS_TIMEOUT_S):
                if self._fetching.locked():
                    async with self._fetching:
                        pass  # a fetch is under way (the first, at start): its keys count
                elif trio.current_time() - self._last_fetch >= self._min_refetch_s:
                    await self._fetch()
        try:
            return self._keys[kid]
        except KeyError:
            raise Unauthenticated(f"no known key {kid!r}") from None

    async def principal_for(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"not a JWT: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise Unauthenticated(f"algorithm {algorithm!r} is not accepted")
        key = await self._key_for(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token was refused: {exc}") from exc
        user = claims.get("sub")
        if not isinstance(user, str) or not user or len(user) > 128:
            raise Unauthenticated("the token's sub is not a user id")
        tenant = DEFAULT_TENANT
        if self._tenant_claim is not None:
            found = claim(claims, self._tenant_claim)
            if not isinstance(found, str) or not found or len(found) > 128:
                raise Unauthenticated(f"the token has no tenant at {self._tenant_claim}")
            tenant = found
        roles: Any = claim(claims, self._roles_claim) if self._roles_claim else None
        if isinstance(roles, str):
            roles = roles.split()
        admin = isinstance(roles, list) and self._admin_role in roles
        return Principal(user=user, tenant=tenant, role="admin" if admin else "user")
