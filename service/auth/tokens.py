"""JWTs from an OIDC provider (or signed with a key or secret of the operator's), checked
with PyJWT: signature, `exp` / `nbf` with a small leeway, issuer, audience, and an
algorithm allow-list (never `none`, never HMAC when the key is a public one).

Keys come from JWT_JWKS_URL, fetched with httpx at start and every JWT_JWKS_REFRESH_S in
the background; a token naming a `kid` not seen yet fetches it again, at most once per
JWT_JWKS_MIN_REFETCH_S. If the JWKS cannot be fetched, the keys already known keep working.

Every way a token can fail to verify (garbled, an algorithm that does not fit the key it
names, a key of the wrong type, a library error) ends in `Unauthenticated`: a 401, counted
by the refused sign-ins limit, and one log line without a traceback.

    verifier = TokenVerifier.from_settings(settings)
    principal = await verifier.principal_for(token)     # or raises Unauthenticated
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import httpx
import jwt
import trio
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..principal import DEFAULT_TENANT, Principal
from ..settings import Settings
from .errors import Unauthenticated

log = logging.getLogger(__name__)

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
SYMMETRIC = ("HS256", "HS384", "HS512")
JWKS_TIMEOUT_S = 5.0
# The algorithms each kind of public key verifies; an EC key, only those of its own curve.
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True, slots=True)
class JwksKey:
    """A key of the JWKS, and the algorithm its entry names (`alg`), when it names one."""

    key: Any
    algorithm: str | None


def fits(algorithm: str, key: JwksKey) -> bool:
    """Whether a token's `alg` may be checked with this key. PyJWT, handed a key of another
    kind, raises TypeError instead of refusing: a kid of an RSA key under `ES256` was a 500."""
    if key.algorithm is not None and key.algorithm != algorithm:
        return False
    if isinstance(key.key, rsa.RSAPublicKey):
        return algorithm in RSA_ALGORITHMS
    if isinstance(key.key, ec.EllipticCurvePublicKey):
        return EC_ALGORITHMS.get(key.key.curve.name) == algorithm
    return False


def names_an_owner(value: object) -> TypeGuard[str]:
    """A user or tenant a token may give: text of 1 to 128 characters without a NUL (which
    PostgreSQL cannot store and SQLite can: the same token would own rows on one database
    and none on the other). Anything else is taken as the token says."""
    return isinstance(value, str) and 0 < len(value) <= 128 and "\x00" not in value


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
        self._keys: dict[str, JwksKey] = {}
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
                    self.load_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                log.warning(
                    "could not fetch the JWKS (%s); keeping %d key(s)", exc, len(self._keys)
                )

    def load_jwks(self, document: object) -> None:
        """Take the keys of a JWKS document (its parsed JSON); ValueError if it has none
        usable, and then the keys known before stay."""
        try:
            assert isinstance(document, dict)
            keys = jwt.PyJWKSet.from_dict(document).keys
            stated = {
                entry.get("kid"): entry.get("alg")
                for entry in document["keys"]
                if isinstance(entry, dict)
            }
        except (AssertionError, AttributeError, TypeError, KeyError, jwt.PyJWTError) as exc:
            raise ValueError(f"not a JWKS: {exc}") from exc
        self._keys = {
            key.key_id: JwksKey(key.key, _text_or_none(stated.get(key.key_id)))
            for key in keys
            if key.key_id
        }

    async def _key_for(self, kid: str | None, algorithm: str) -> Any:
        """`kid` as the token's header gives it: PyJWT has refused a header whose kid is not
        a string."""
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
        found = self._keys.get(kid)
        if found is None:
            raise Unauthenticated(f"no known key {kid[:64]!r}")
        if not fits(algorithm, found):
            raise Unauthenticated(f"algorithm {algorithm} does not fit key {kid[:64]!r}")
        return found.key

    async def principal_for(self, token: str) -> Principal:
        try:
            return await self._principal_for(token)
        except Unauthenticated:
            raise
        except Exception as exc:
            # Anything else a hostile token makes the JWT library raise is a refusal too:
            # never a 500, never a traceback per guess in the log.
            kind = type(exc).__name__
            raise Unauthenticated(f"the token could not be verified ({kind})") from exc

    async def _principal_for(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"not a JWT: {exc}") from exc
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise Unauthenticated(f"algorithm {str(algorithm)[:32]!r} is not accepted")
        key = await self._key_for(header.get("kid"), algorithm)
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
        if not names_an_owner(user):
            raise Unauthenticated("the token's sub is not a user id")
        tenant = DEFAULT_TENANT
        if self._tenant_claim is not None:
            found = claim(claims, self._tenant_claim)
            if not names_an_owner(found):
                raise Unauthenticated(f"the token has no tenant at {self._tenant_claim}")
            tenant = found
        roles: Any = claim(claims, self._roles_claim) if self._roles_claim else None
        if isinstance(roles, str):
            roles = roles.split()
        admin = isinstance(roles, list) and self._admin_role in roles
        return Principal(user=user, tenant=tenant, role="admin" if admin else "user")


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
