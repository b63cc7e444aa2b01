"""JWTs as an OIDC provider would sign them, checked by the service's verifier."""

from __future__ import annotations

import time

import jwt
import pytest

from service.auth.errors import Unauthenticated
from service.auth.tokens import ASYMMETRIC, SYMMETRIC, TokenVerifier
from tests.auth.jwks_server import AUDIENCE, ISSUER, SigningKeys


def verifier(
    *, jwks_url: str | None = None, static_key: str | None = None, secret: bool = False, **kw: str
) -> TokenVerifier:
    return TokenVerifier(
        algorithms=SYMMETRIC if secret else ASYMMETRIC,
        static_key=static_key,
        jwks_url=jwks_url,
        issuer=ISSUER,
        audience=AUDIENCE,
        tenant_claim=kw.get("tenant_claim"),
        roles_claim=kw.get("roles_claim"),
        admin_role="admin",
        leeway_s=5,
        refresh_s=300,
        min_refetch_s=0,
    )


async def test_rs256_and_es256_tokens_from_the_jwks_name_their_user(
    jwks: tuple[SigningKeys, str],
) -> None:
    keys, url = jwks
    check = verifier(jwks_url=url, tenant_claim="org.id", roles_claim="realm_access.roles")
    for kid in ("rsa-1", "ec-1"):
        token = keys.token(
            kid, sub="alice", org={"id": "acme"}, realm_access={"roles": ["admin", "x"]}
        )
        principal = await check.principal_for(token)
        assert (principal.user, principal.tenant, principal.role) == ("alice", "acme", "admin")
    plain = await check.principal_for(keys.token("rsa-1", sub="bob", org={"id": "acme"}))
    assert plain.role == "user"


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"exp": -60}, "expired"),  # seconds from now, taken when the test runs
        ({"nbf": 60}, "not yet valid"),
        ({"iss": "https://elsewhere.test"}, "issuer"),
        ({"aud": "someone-else"}, "(?i)audience"),
        ({"sub": ""}, "sub"),
    ],
)
async def test_a_token_that_fails_a_check_is_refused(
    jwks: tuple[SigningKeys, str], claims: dict[str, object], says: str
) -> None:
    keys, url = jwks
    timed = {k: int(time.time()) + v for k, v in claims.items() if k in ("exp", "nbf")}
    token = keys.token("rsa-1", **{"sub": "alice", **claims, **timed})
    with pytest.raises(Unauthenticated, match=says):
        await verifier(jwks_url=url).principal_for(token)


async def test_alg_none_and_hmac_with_the_public_key_are_refused(
    jwks: tuple[SigningKeys, str],
) -> None:
    keys, url = jwks
    now = int(time.time())
    claims = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 300}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "rsa-1"})
    public_pem = keys.public_pem("rsa-1")
    # The classic confusion: HS256 "signed" with the RSA public key as the secret.
    confused = _hs256(claims, public_pem.encode())
    for check in (verifier(jwks_url=url), verifier(static_key=public_pem)):
        for token in (unsigned, confused):
            with pytest.raises(Unauthenticated, match="not accepted"):
                await check.principal_for(token)


def _hs256(claims: dict[str, object], secret: bytes) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(signature)}"


async def test_a_new_kid_is_fetched_and_a_jwks_that_is_down_keeps_the_known_keys(
    jwks: tuple[SigningKeys, str],
) -> None:
    keys, url = jwks
    check = verifier(jwks_url=url)
    assert (await check.principal_for(keys.token("rsa-1", sub="a"))).user == "a"
    keys.add("rsa-2", "rsa")  # rotated in: the verifier has not seen it yet
    assert (await check.principal_for(keys.token("rsa-2", sub="b"))).user == "b"
    keys.up = False
    assert (await check.principal_for(keys.token("rsa-1", sub="c"))).user == "c"
    keys.add("rsa-3", "rsa")
    with pytest.raises(Unauthenticated, match="no known key"):
        await check.principal_for(keys.token("rsa-3", sub="d"))


async def test_unknown_kids_fetch_the_jwks_at_most_once_per_interval(
    jwks: tuple[SigningKeys, str],
) -> None:
    keys, url = jwks
    check = verifier(jwks_url=url)
    check._min_refetch_s = 3600
    keys.add("hidden", "rsa", publish=False)
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            await check.principal_for(keys.token("hidden", sub="x"))
    assert keys.fetches == 1


async def test_a_shared_secret_takes_hs256_only() -> None:
    now = int(time.time())
    claims = {"sub": "svc", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 60}
    check = verifier(static_key="s3cret-s3cret-s3cret-s3cret-s3cret", secret=True)
    good = jwt.encode(claims, "s3cret-s3cret-s3cret-s3cret-s3cret", algorithm="HS256")
    assert (await check.principal_for(good)).user == "svc"
    wrong = jwt.encode(claims, "another-secret-another-secret-xx", algorithm="HS256")
    with pytest.raises(Unauthenticated):
        await check.principal_for(wrong)
    keys = SigningKeys()
    keys.add("rsa-1")
    with pytest.raises(Unauthenticated, match="not accepted"):
        await check.principal_for(keys.token("rsa-1", sub="x"))


async def test_garbage_is_refused_not_a_crash() -> None:
    for token in ("", "a.b", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.x", "\x00" * 10):
        with pytest.raises(Unauthenticated):
            await verifier(static_key="x").principal_for(token)
