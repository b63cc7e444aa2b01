"""Every token that does not verify is a refusal: `Unauthenticated` from the verifier, a 401
over HTTP, counted by the refused sign-ins limit, and no traceback in the log; whatever the
header, the claims or the signature say."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.auth.errors import Unauthenticated
from service.auth.tokens import ASYMMETRIC, SYMMETRIC
from tests.auth.jwks_server import AUDIENCE, ISSUER, SigningKeys, serve_jwks
from tests.auth.test_tokens import verifier
from tests.integration.harness import running_service

KIDS = ("rsa-1", "ec-1")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assemble(header: Any, claims: Any, signature: bytes = b"\x00" * 64) -> str:
    """A token as a hostile client writes it: any JSON (or bytes) in any part."""

    def part(value: Any) -> str:
        return b64(value if isinstance(value, bytes) else json.dumps(value).encode())

    return f"{part(header)}.{part(claims)}.{b64(signature)}"


def good_claims(**extra: Any) -> dict[str, Any]:
    expires = int(time.time()) + 300
    return {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": expires, **extra}


async def test_a_token_signed_with_another_algorithm_than_its_key_states_is_refused(
    jwks: tuple[SigningKeys, str],
) -> None:
    """The JWKS states `alg: RS256` for rsa-1: a token that key really signed, but with
    RS512, is refused (a key is used with the algorithm its publisher gave it, no other)."""
    keys, url = jwks
    check = verifier(jwks_url=url)
    token = jwt.encode(
        good_claims(), keys.keys["rsa-1"], algorithm="RS512", headers={"kid": "rsa-1"}
    )
    as_stated = jwt.encode(
        good_claims(), keys.keys["rsa-1"], algorithm="RS256", headers={"kid": "rsa-1"}
    )
    assert (await check.principal_for(as_stated)).user == "mallory"
    with pytest.raises(Unauthenticated):
        await check.principal_for(token)


def hostile_tokens(keys: SigningKeys) -> dict[str, str]:
    claims = good_claims()
    public_pem = keys.public_pem("rsa-1").encode()
    head = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
    hs256 = jwt.get_algorithm_by_name("HS256").sign(signing_input.encode(), public_pem)
    # Signed for real with the EC key, under a header naming the RSA key.
    ec_signed = jwt.encode(claims, keys.keys["ec-1"], algorithm="ES256", headers={"kid": "rsa-1"})
    return {
        "ES256 naming an RSA key": assemble({"alg": "ES256", "kid": "rsa-1"}, claims),
        "ES256 signed by EC, naming an RSA key": ec_signed,
        "RS256 naming an EC key": assemble({"alg": "RS256", "kid": "ec-1"}, claims),
        "PS512 naming an EC key": assemble({"alg": "PS512", "kid": "ec-1"}, claims),
        "ES384 naming a P-256 key": assemble({"alg": "ES384", "kid": "ec-1"}, claims),
        "HS256 with the public key as secret": f"{signing_input}.{b64(hs256)}",
        "alg none": assemble({"alg": "none", "kid": "rsa-1"}, claims, b""),
        "kid a number": assemble({"alg": "RS256", "kid": 7}, claims),
        "kid a list": assemble({"alg": "RS256", "kid": ["rsa-1"]}, claims),
        "alg a list": assemble({"alg": ["RS256"], "kid": "rsa-1"}, claims),
        "header a list": assemble([1, 2], claims),
        "claims a list": assemble({"alg": "RS256", "kid": "rsa-1"}, [1]),
        "claims not JSON": assemble({"alg": "RS256", "kid": "rsa-1"}, b"\xff\xfe"),
        "not base64": "e30.\u00e9\u00e9.\u00e9",
        "two dots only": "..",
    }


async def test_every_hostile_token_is_refused_by_the_verifier(
    jwks: tuple[SigningKeys, str],
) -> None:
    keys, url = jwks
    for check in (verifier(jwks_url=url), verifier(static_key=keys.public_pem("rsa-1"))):
        outcomes = {}
        for name, token in hostile_tokens(keys).items():
            try:
                await check.principal_for(token)
                outcomes[name] = "accepted"
            except Unauthenticated:
                outcomes[name] = "refused"
            except Exception as exc:  # what this test is about: anything else is a 500
                outcomes[name] = f"raised {type(exc).__name__}"
        assert outcomes == dict.fromkeys(outcomes, "refused")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
headers = st.fixed_dictionaries(
    {"alg": st.sampled_from((*ASYMMETRIC, *SYMMETRIC, "none", "EdDSA")) | json_values},
    optional={"kid": st.sampled_from(KIDS) | json_values, "typ": json_values},
)
# Claims that would pass but for one thing (the audience is never ours), or any JSON at all.
claim_sets = (
    st.fixed_dictionaries(
        {"sub": st.just("mallory") | json_values, "iss": st.just(ISSUER) | json_values},
        optional={"exp": json_values, "nbf": json_values, "iat": json_values, "aud": json_values},
    ).filter(lambda claims: claims.get("aud") != AUDIENCE)
    | json_values
)


_KEYS = SigningKeys()
_KEYS.add("rsa-1", "rsa")
_KEYS.add("ec-1", "ec")


@settings(max_examples=200, deadline=None)
@example(
    header={"alg": "ES256", "kid": "rsa-1"},
    claims={"sub": "mallory"},
    signer=None,
    signing_algorithm="RS256",
    noise=b"",
)
@given(
    header=headers,
    claims=claim_sets,
    signer=st.sampled_from((*KIDS, None)),
    signing_algorithm=st.sampled_from(("RS256", "PS256", "ES256", "ES384", "HS256")),
    noise=st.binary(max_size=80),
)
async def test_any_token_that_does_not_verify_is_unauthenticated_never_an_error(
    header: dict[str, Any],
    claims: Any,
    signer: str | None,
    signing_algorithm: str,
    noise: bytes,
) -> None:
    keys = _KEYS
    check = verifier(jwks_url="http://127.0.0.1:9/never-fetched")
    check.load_jwks(keys.jwks())
    check._min_refetch_s = 3600  # a made-up kid must not try to fetch the JWKS
    token = assemble(header, claims, noise)
    if signer is not None:
        # A real signature, by some key with some algorithm, whatever the header names.
        body = token.rsplit(".", 1)[0].encode()
        key: Any = keys.keys[signer]
        if signing_algorithm == "HS256":
            key = keys.public_pem(signer).encode()
        try:
            signature = jwt.get_algorithm_by_name(signing_algorithm).sign(body, key)
        except Exception:  # the key cannot sign with that algorithm: keep the noise
            signature = noise
        token = f"{body.decode()}.{b64(signature)}"
    with pytest.raises(Unauthenticated):
        await check.principal_for(token)


async def test_hostile_tokens_are_401s_counted_by_the_sign_in_limit_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = SigningKeys()
    keys.add("rsa-1", "rsa")
    keys.add("ec-1", "ec")
    tokens = list(hostile_tokens(keys).values())
    env = {
        "AUTH": "jwt",
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "AUTH_FAILURE_BURST": str(len(tokens)),
        "AUTH_FAILURE_EVERY_S": "60",
    }
    statuses: list[int] = []
    with caplog.at_level(logging.INFO):
        async with trio.open_nursery() as nursery:
            env["JWT_JWKS_URL"] = await nursery.start(serve_jwks, keys)
            async with running_service(tmp_path, None, env=env) as service:
                for token in [*tokens, tokens[0]]:
                    response = await service.client.get(
                        "/api/conversations", headers={"Authorization": f"Bearer {token}".encode()}
                    )
                    statuses.append(response.status_code)
                honest = await service.client.get(
                    "/api/conversations",
                    headers={"Authorization": f"Bearer {keys.token('rsa-1', sub='alice')}"},
                )
            nursery.cancel_scope.cancel()
    assert statuses == [401] * len(tokens) + [429]
    assert honest.status_code == 429  # the address is limited, whatever it sends next
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= 40]
    assert tracebacks == []
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused a caller")]
    assert len(refusals) == len(tokens)


# What a hostile client can put in a header value: every byte HTTP/1.1 lets through
# (visible ASCII, obs-text, and spaces or tabs inside), as h11 on both ends enforces.
_LEGAL = bytes([0x09, 0x20, *range(0x21, 0x7F), *range(0x80, 0x100)])
header_bytes = st.binary(max_size=300).map(
    lambda raw: bytes(byte for byte in raw if byte in _LEGAL).strip()
)
credentials = st.one_of(
    header_bytes.map(lambda raw: b"Bearer " + raw),
    st.builds(
        lambda header, claims, noise: b"Bearer " + assemble(header, claims, noise).encode(),
        headers,
        claim_sets,
        st.binary(max_size=80),
    ),
    header_bytes.map(lambda raw: b"Bearer fo_" + raw),
    header_bytes,
)


@settings(max_examples=4, deadline=None)
@example(sent=[b"Bearer " + assemble({"alg": "ES256", "kid": "rsa-1"}, good_claims()).encode()])
@given(sent=st.lists(credentials, min_size=40, max_size=40))
async def test_any_credential_header_over_http_is_a_401_never_an_error(
    tmp_path_factory: pytest.TempPathFactory, sent: list[bytes]
) -> None:
    keys = _KEYS
    env = {
        "AUTH": "keys,jwt",
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "AUTH_FAILURE_BURST": "1000",
    }
    statuses: dict[int, int] = {}
    async with trio.open_nursery() as nursery:
        env["JWT_JWKS_URL"] = await nursery.start(serve_jwks, keys)
        async with running_service(tmp_path_factory.mktemp("svc"), None, env=env) as service:
            for value in (raw.strip() for raw in sent):
                for name in ("Authorization", "X-API-Key"):
                    response = await service.client.get("/api/conversations", headers={name: value})
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        nursery.cancel_scope.cancel()
    assert set(statuses) == {401}
