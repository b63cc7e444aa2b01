"""What the JWT tests share: a real JWKS server with an RSA and an EC key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from tests.auth.jwks_server import SigningKeys, serve_jwks


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[SigningKeys, str]]:
    """The keys (`rsa-1`, `ec-1`) and the URL their JWKS is served at."""
    keys = SigningKeys()
    keys.add("rsa-1", "rsa")
    keys.add("ec-1", "ec")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_jwks, keys)
        yield keys, url
        nursery.cancel_scope.cancel()
