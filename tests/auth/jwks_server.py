"""Signing keys and a JWKS over HTTP, made by the tests (cryptography), for JWT tests.

keys = SigningKeys()
async with trio.open_nursery() as nursery:
    url = await nursery.start(serve_jwks, keys)     # http://127.0.0.1:PORT/jwks
    token = keys.token(kid="rsa-1", sub="alice")
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypercorn.config import Config
from hypercorn.trio import serve

ISSUER = "https://issuer.test"
AUDIENCE = "fanout"


def _private(kind: str) -> Any:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class SigningKeys:
    """Keys by kid; `published` are those the JWKS shows; `up` False makes it answer 503;
    `served`, when set, is the JSON answered instead of the JWKS."""

    keys: dict[str, Any] = field(default_factory=dict)
    published: set[str] = field(default_factory=set)
    up: bool = True
    served: Any = None
    fetches: int = 0

    def add(self, kid: str, kind: str = "rsa", *, publish: bool = True) -> None:
        self.keys[kid] = _private(kind)
        if publish:
            self.published.add(kid)

    def jwks(self) -> dict[str, Any]:
        entries = []
        for kid in sorted(self.published):
            key = self.keys[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
                public["alg"] = "RS256"
            else:
                public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
                public["alg"] = "ES256"
            entries.append({**public, "kid": kid, "use": "sig"})
        return {"keys": entries}

    def public_pem(self, kid: str) -> str:
        return (
            self.keys[kid]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def token(self, kid: str, *, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        key = self.keys[kid]
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid, **(headers or {})})


async def serve_jwks(
    keys: SigningKeys, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        keys.fetches += 1
        document = keys.jwks() if keys.served is None else keys.served
        status, body = (200, json.dumps(document).encode()) if keys.up else (503, b"down")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.errorlog = None  # type: ignore[assignment]

    async def started(task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, config, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(started)
        task_status.started(f"{binds[0]}/jwks")
