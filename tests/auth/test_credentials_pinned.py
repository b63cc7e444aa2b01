"""Credentials a refactor could stop checking without another test noticing: each case here
failed with its check changed by hand (or by `make mutation`) before it was kept."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.trio import serve

from service.app import create_app
from service.auth import ANONYMOUS
from service.auth.authenticate import TOUCH_EVERY_S, Authenticator
from service.auth.errors import Unauthenticated
from service.auth.keys import issue_key, key_hash
from service.auth.tokens import TokenVerifier
from service.settings import load_settings
from service.storage.database import Database
from service.storage.keys import find_key_by_hash, revoke_key
from service.storage.migrate import migrate
from service.storage.store import Store
from tests.auth.jwks_server import AUDIENCE, ISSUER, SigningKeys, serve_jwks
from tests.auth.test_access import make_key
from tests.auth.test_token_failures import assemble
from tests.auth.test_tokens import verifier
from tests.integration.harness import running_service

T = TypeVar("T")
SECRET = "s" * 32


# --- which credentials a service takes -------------------------------------------------


async def test_a_jwt_only_service_refuses_a_valid_api_key(tmp_path: Path) -> None:
    env = {"AUTH": "jwt", "JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}
    async with running_service(tmp_path, None, env=env) as service:
        key, _ = await make_key(service, "stored", user="alice", tenant="acme")
        as_bearer = await service.client.get(
            "/api/conversations", headers={"Authorization": f"Bearer {key}"}
        )
        as_header = await service.client.get("/api/conversations", headers={"X-API-Key": key})
        token = jwt.encode(
            {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300},
            SECRET,
            algorithm="HS256",
        )
        with_jwt = await service.client.get(
            "/api/conversations", headers={"Authorization": f"Bearer {token}"}
        )
    assert (as_bearer.status_code, as_header.status_code) == (401, 401)
    assert with_jwt.status_code == 200


async def test_only_the_bearer_scheme_carries_a_credential(tmp_path: Path) -> None:
    async with running_service(tmp_path, None, env={"AUTH": "keys"}) as service:
        key, _ = await make_key(service, "alice")
        statuses = {}
        for scheme in ("Bearer", "bearer", "Basic", "Token", "Digest"):
            response = await service.client.get(
                "/api/conversations", headers={"Authorization": f"{scheme} {key}"}
            )
            statuses[scheme] = response.status_code
    assert statuses == {"Bearer": 200, "bearer": 200, "Basic": 401, "Token": 401, "Digest": 401}


async def test_without_auth_every_caller_is_the_anonymous_admin() -> None:
    settings = load_settings({"AUTH": "none"}, dotenv_path=None)
    auth = Authenticator(settings, None, None)
    for token in (None, "", "fo_anything", "not.a.jwt"):
        assert await auth.principal_for(token) == ANONYMOUS


async def test_a_keys_only_service_refuses_anything_but_a_key_as_401(tmp_path: Path) -> None:
    """A JWT or any other token sent to AUTH=keys is refused as a credential of the wrong
    kind (never looked up, never a 500)."""
    token = hs256(sub="alice")
    async with running_service(tmp_path, None, env={"AUTH": "keys"}) as service:
        statuses = [
            (
                await service.client.get(
                    "/api/conversations", headers={"Authorization": f"Bearer {credential}"}
                )
            ).status_code
            for credential in (token, "not-a-key")
        ]
    assert statuses == [401, 401]


async def test_a_wrong_method_on_an_open_route_is_a_405_for_anyone(tmp_path: Path) -> None:
    """Which methods /healthz takes is no secret; on a guarded route the same mistake
    from someone unidentified is a 401 (nothing said about the routes)."""
    async with running_service(tmp_path, None, env={"AUTH": "keys"}) as service:
        open_route = await service.client.post("/healthz")
        guarded = await service.client.put("/api/conversations")
    assert (open_route.status_code, guarded.status_code) == (405, 401)


async def test_a_route_that_declares_no_requirement_is_refused_to_every_caller(
    tmp_path: Path,
) -> None:
    """Deny by default: a route added without `@requires` is served to nobody, not even an
    admin with every scope, and the refusal says why."""
    async with running_service(tmp_path, None, env={"AUTH": "keys"}) as service:
        admin, _ = await make_key(service, "admin", role="admin")
        app = create_app(service.resources)
        served = []

        @app.get("/api/undeclared")
        async def undeclared() -> str:
            served.append(True)
            return "served"

        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.errorlog = None  # type: ignore[assignment]
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, app, config))  # type: ignore[arg-type]
            async with httpx.AsyncClient(base_url=binds[0]) as client:
                response = await client.get(
                    "/api/undeclared", headers={"Authorization": f"Bearer {admin}"}
                )
            nursery.cancel_scope.cancel()
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "this route is not open to anyone"
    assert served == []


# --- what `keys create` and POST /admin/keys store ---------------------------------------


def test_keys_create_refuses_an_empty_or_overlong_user_or_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m service keys create`, run in this process (the same entry point)."""
    from service.process.commands import run_command

    monkeypatch.chdir(tmp_path)  # no .env of the work tree
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'keys.db'}")
    results = {}
    for label, args in {
        "empty user": ("--user", ""),
        "empty tenant": ("--user", "alice", "--tenant", ""),
        "user of 129": ("--user", "u" * 129),
        "tenant of 129": ("--user", "alice", "--tenant", "t" * 129),
        "user and tenant of 128": ("--user", "u" * 128, "--tenant", "t" * 128),
        "user and tenant of 1": ("--user", "u", "--tenant", "t"),
        "no duration": ("--user", "alice", "--expires", "forever"),
    }.items():
        try:
            code = run_command(["keys", "create", *args, "--json"])
        except SystemExit as exited:  # argparse's own refusal of an argument
            code = int(exited.code or 0)
        results[label] = (code, capsys.readouterr().err)
    refused = {label: code for label, (code, _) in results.items() if code != 0}
    assert refused == {
        "empty user": 2,
        "empty tenant": 2,
        "user of 129": 2,
        "tenant of 129": 2,
        "no duration": 2,
    }
    assert "--user: must be 1 to 128 printable ASCII characters" in results["empty user"][1]
    assert "--tenant: must be 1 to 128 printable ASCII characters" in results["empty tenant"][1]
    assert run_command(["keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["keys"]
    assert [(k["user"], k["tenant"]) for k in listed] == [("u" * 128, "t" * 128), ("u", "t")]
    assert results["no duration"][1] == (
        "error: 'forever': expected a number and a unit, e.g. 30d, 12h, 90m\n"
    )


def test_a_key_with_an_unknown_scope_is_never_issued(tmp_path: Path) -> None:
    """The command and the route offer only known scopes; issue_key, which both call,
    refuses any other itself."""
    database = Database.connect(f"sqlite:///{tmp_path / 'keys.db'}")
    migrate(database.engine)
    try:
        with database.engine.begin() as connection:
            with pytest.raises(ValueError, match="unknown scope"):
                issue_key(
                    connection,
                    user="alice",
                    tenant="acme",
                    role="user",
                    scopes=frozenset({"process", "root"}),
                    expires_in=None,
                    name=None,
                )
    finally:
        database.close()


@pytest.mark.parametrize(
    ("expires", "lasts"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
        ("007d", timedelta(days=7)),
        ("99999s", timedelta(seconds=99999)),
    ],
)
def test_a_duration_sets_the_expiry_that_far_ahead(
    tmp_path: Path, expires: str, lasts: timedelta
) -> None:
    from service.auth.keys import parse_duration

    database = Database.connect(f"sqlite:///{tmp_path / 'keys.db'}")
    migrate(database.engine)
    try:
        with database.engine.begin() as connection:
            _, record = issue_key(
                connection,
                user="alice",
                tenant="acme",
                role="user",
                scopes=frozenset(),
                expires_in=parse_duration(expires),
                name=None,
            )
    finally:
        database.close()
    assert record.expires_at is not None
    lasted = record.expires_at - record.created_at
    assert abs(lasted - lasts) < timedelta(seconds=5)


@pytest.mark.parametrize("expires", ["0d", "000s", "100000d", "30", "d", "30y", "-1d", " 30d"])
async def test_a_duration_that_is_no_duration_is_a_400_on_expires(
    tmp_path: Path, expires: str
) -> None:
    async with running_service(tmp_path, None, env={"AUTH": "keys"}) as service:
        admin, _ = await make_key(service, "admin", user="root", role="admin")
        response = await service.client.post(
            "/admin/keys",
            json={"user": "bob", "expires": expires},
            headers={"Authorization": f"Bearer {admin}"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "expires"


# --- JWT claims, keys and the JWKS -----------------------------------------------------


def hs256(**claims: Any) -> str:
    body = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300, **claims}
    return jwt.encode(body, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("claims", "user", "tenant"),
    [
        ({"sub": "u" * 128, "org": "t"}, "u" * 128, "t"),
        ({"sub": "u", "org": "t" * 128}, "u", "t" * 128),
        ({"sub": "u" * 129, "org": "t"}, None, None),
        ({"sub": "u", "org": "t" * 129}, None, None),
        ({"sub": "u", "org": ""}, None, None),
        ({"sub": "u", "org": 7}, None, None),
        ({"sub": "u"}, None, None),
        ({"sub": 7, "org": "t"}, None, None),
    ],
)
async def test_a_jwts_user_and_tenant_are_1_to_128_characters(
    claims: dict[str, Any], user: str | None, tenant: str | None
) -> None:
    check = verifier(static_key=SECRET, secret=True, tenant_claim="org")
    token = hs256(**claims)
    if user is None:
        with pytest.raises(Unauthenticated):
            await check.principal_for(token)
        return
    principal = await check.principal_for(token)
    assert (principal.user, principal.tenant) == (user, tenant)


async def test_jwt_public_key_may_be_a_pem_or_the_path_of_one(tmp_path: Path) -> None:
    keys = SigningKeys()
    keys.add("rsa-1", "rsa")
    pem = keys.public_pem("rsa-1")
    path = tmp_path / "public.pem"
    path.write_text(pem)
    token = keys.token("rsa-1", sub="alice")
    for given in (pem, str(path), "\n" + pem):
        settings = load_settings(
            {
                "AUTH": "jwt",
                "JWT_PUBLIC_KEY": given,
                "JWT_ISSUER": ISSUER,
                "JWT_AUDIENCE": AUDIENCE,
            },
            dotenv_path=None,
        )
        principal = await TokenVerifier.from_settings(settings).principal_for(token)
        assert principal.user == "alice"


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[SigningKeys, str]]:
    keys = SigningKeys()
    keys.add("old", "rsa")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_jwks, keys)
        yield keys, url
        nursery.cancel_scope.cancel()


async def test_the_jwks_is_refetched_periodically_dropping_removed_keys(
    jwks: tuple[SigningKeys, str],
) -> None:
    """Without the periodic refresh a key the provider removed would stay trusted for good,
    and a new one would be learnt only through an unknown kid (here: never, the refetch
    interval is too long)."""
    keys, url = jwks
    check = TokenVerifier(
        algorithms=("RS256",),
        static_key=None,
        jwks_url=url,
        issuer=ISSUER,
        audience=AUDIENCE,
        tenant_claim=None,
        roles_claim=None,
        admin_role="admin",
        leeway_s=5,
        refresh_s=0.05,
        min_refetch_s=3600,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(check.keep_fresh)
        with trio.fail_after(5):
            while keys.fetches == 0:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert (await check.principal_for(keys.token("old", sub="a"))).user == "a"
        keys.add("new", "rsa")
        keys.published.discard("old")
        seen = keys.fetches
        with trio.fail_after(5):
            while keys.fetches < seen + 2:  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert (await check.principal_for(keys.token("new", sub="b"))).user == "b"
    with pytest.raises(Unauthenticated, match="no known key"):
        await check.principal_for(keys.token("old", sub="a"))


async def test_a_token_naming_no_key_is_refused_without_asking_the_jwks(
    jwks: tuple[SigningKeys, str],
) -> None:
    """No kid, no look-up: such tokens cannot make the provider be fetched."""
    keys, url = jwks
    check = verifier(jwks_url=url)  # refetches allowed at any time (min_refetch_s=0)
    assert (await check.principal_for(keys.token("old", sub="a"))).user == "a"
    fetched = keys.fetches
    token = jwt.encode(
        {"sub": "a", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300},
        keys.keys["old"],
        algorithm="RS256",
    )
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="names no key"):
            await check.principal_for(token)
    assert keys.fetches == fetched


async def test_a_token_whose_kid_is_not_a_string_is_refused_without_asking_the_jwks(
    jwks: tuple[SigningKeys, str],
) -> None:
    keys, url = jwks
    check = verifier(jwks_url=url)  # refetches allowed at any time (min_refetch_s=0)
    assert (await check.principal_for(keys.token("old", sub="a"))).user == "a"
    fetched = keys.fetches
    for kid in (7, True, ["old"], {"kid": "old"}):
        token = assemble({"alg": "RS256", "kid": kid}, {"sub": "a", "iss": ISSUER})
        with pytest.raises(Unauthenticated):
            await check.principal_for(token)
    assert keys.fetches == fetched


async def test_a_jwks_that_is_not_one_keeps_the_known_keys_and_the_refresh_running(
    jwks: tuple[SigningKeys, str],
) -> None:
    """A provider answering something else (an error page as JSON, a broken deploy): the
    keys known stay trusted, the periodic refresh goes on, and an unknown kid is refused
    as unknown."""
    keys, url = jwks
    check = verifier(jwks_url=url)
    check._refresh_s = 0.05
    async with trio.open_nursery() as nursery:
        nursery.start_soon(check.keep_fresh)
        with trio.fail_after(5):
            while keys.fetches == 0:  # noqa: ASYNC110
                await trio.sleep(0.01)
        keys.add("new", "rsa")
        for served in ([1, 2], {"error": "maintenance"}, {"keys": "none"}, {"keys": [7]}):
            keys.served = served
            seen = keys.fetches
            with trio.fail_after(5):
                while keys.fetches < seen + 2:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            assert (await check.principal_for(keys.token("old", sub="a"))).user == "a"
            with pytest.raises(Unauthenticated, match="no known key"):
                await check.principal_for(keys.token("new", sub="b"))
        nursery.cancel_scope.cancel()


async def test_an_unknown_kid_fetches_the_jwks_again_exactly_when_the_interval_is_over(
    jwks: tuple[SigningKeys, str], mock_clock: trio.testing.MockClock
) -> None:
    """JWT_JWKS_MIN_REFETCH_S after a fetch, not a moment later (virtual time; the JWKS
    is served for real)."""
    keys, url = jwks
    check = verifier(jwks_url=url)
    check._min_refetch_s = 60
    keys.add("hidden", "rsa", publish=False)
    hidden = keys.token("hidden", sub="x")
    fetches = []
    for jump in (0, 59.5, 0.5):
        mock_clock.jump(jump)
        with pytest.raises(Unauthenticated, match="no known key"):
            await check.principal_for(hidden)
        fetches.append(keys.fetches)
    assert fetches == [1, 1, 2]


async def test_a_token_that_is_not_a_jwt_is_refused_as_such() -> None:
    """The reason is what the refusal's log line says (docs/security.md)."""
    check = verifier(static_key=SECRET, secret=True)
    for token in ("", "a.b", "a.b.c", "\x00" * 10, "e30.e30"):
        with pytest.raises(Unauthenticated, match="not a JWT"):
            await check.principal_for(token)


async def test_a_jwt_public_key_that_does_not_load_refuses_tokens_as_unauthenticated() -> None:
    """A PEM that lost a line when pasted: the JWT library raises ValueError for an ES256
    token, which must still be a refusal (a 401), never a principal-less request."""
    keys = SigningKeys()
    keys.add("ec-1", "ec")
    lines = keys.public_pem("ec-1").splitlines()
    truncated = "\n".join([lines[0], lines[1], lines[-1]])
    settings = load_settings(
        {
            "AUTH": "jwt",
            "JWT_PUBLIC_KEY": truncated,
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
        },
        dotenv_path=None,
    )
    check = TokenVerifier.from_settings(settings)
    with pytest.raises(Unauthenticated, match=r"could not be verified \(ValueError\)"):
        await check.principal_for(keys.token("ec-1", sub="alice"))


# --- the key cache and last_used_at (virtual time: the clock moves only when told) ------


class CountingStore(Store):
    """The real store, counting the reads and writes the authenticator asks of it."""

    reads = 0
    writes = 0

    async def read(self, work: Callable[[Any], T]) -> T:
        self.reads += 1
        return await super().read(work)

    async def write(self, label: str, work: Callable[[Any], None], **kw: Any) -> bool:
        self.writes += 1
        return await super().write(label, work, **kw)


@pytest.fixture
def counting_store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    database = Database.connect(f"sqlite:///{tmp_path / 'auth.db'}")
    migrate(database.engine)
    store = CountingStore(database, instance="test")
    try:
        yield store  # type: ignore[misc]
    finally:
        database.close()


async def new_key(store: Store) -> str:
    key, _ = await store.read(
        lambda c: issue_key(
            c,
            user="alice",
            tenant="acme",
            role="user",
            scopes=frozenset(),
            expires_in=None,
            name=None,
        )
    )
    return key


def authenticator(store: Store, cache_s: str) -> Authenticator:
    settings = load_settings({"AUTH": "keys", "AUTH_CACHE_S": cache_s}, dotenv_path=None)
    return Authenticator(settings, store, None)


async def test_a_key_is_looked_up_once_per_cache_interval(
    counting_store: CountingStore, mock_clock: trio.testing.MockClock
) -> None:
    key = await new_key(counting_store)
    auth = authenticator(counting_store, "5")
    counting_store.reads = 0
    for _ in range(3):
        assert (await auth.principal_for(key)).user == "alice"
    assert counting_store.reads == 1
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await auth.principal_for("fo_not-a-key")
    assert counting_store.reads == 2  # a refusal is cached as well
    assert (await auth.principal_for(key)).user == "alice"
    assert counting_store.reads == 2  # the key's entry outlived the refusal's
    mock_clock.jump(4.999)
    assert (await auth.principal_for(key)).user == "alice"
    assert counting_store.reads == 2
    mock_clock.jump(0.001)  # AUTH_CACHE_S since the look-up: looked up again
    assert (await auth.principal_for(key)).user == "alice"
    assert counting_store.reads == 3


async def test_last_used_at_is_written_at_first_use_then_at_most_once_a_minute(
    counting_store: CountingStore, mock_clock: trio.testing.MockClock
) -> None:
    key = await new_key(counting_store)
    auth = authenticator(counting_store, "0")

    async def last_used() -> datetime | None:
        record = await counting_store.read(lambda c: find_key_by_hash(c, key_hash(key)))
        assert record is not None
        return record.last_used_at

    async def use(times: int) -> None:
        for _ in range(times):
            await auth.principal_for(key)
            await trio.testing.wait_all_tasks_blocked()

    async with trio.open_nursery() as nursery:
        auth.background = nursery
        assert await last_used() is None
        await use(1)
        assert counting_store.writes == 1
        mock_clock.jump(TOUCH_EVERY_S - 1)
        await use(5)
        assert counting_store.writes == 1
        mock_clock.jump(1)
        await use(1)
        assert counting_store.writes == 2
    # The nursery waited for both writes.
    assert await last_used() is not None


# --- refused sign-ins, per client address, and the access log --------------------------


async def test_one_addresss_guesses_do_not_lock_out_another_address(tmp_path: Path) -> None:
    """Two clients on two loopback addresses: the guesser is refused with 429 once its
    burst is spent, the other still signs in."""
    env = {"AUTH": "keys", "AUTH_FAILURE_BURST": "3", "AUTH_FAILURE_EVERY_S": "60"}
    async with running_service(tmp_path, None, env=env) as service:
        key, _ = await make_key(service, "alice")
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=service.url, transport=transport) as guesser:
            guesses = [
                (
                    await guesser.get(
                        "/api/conversations", headers={"Authorization": "Bearer fo_guess"}
                    )
                ).status_code
                for _ in range(5)
            ]
            other = await service.client.get(
                "/api/conversations", headers={"Authorization": f"Bearer {key}"}
            )
            guesser_with_the_key = await guesser.get(
                "/api/conversations", headers={"Authorization": f"Bearer {key}"}
            )
    assert guesses == [401, 401, 401, 429, 429]
    assert other.status_code == 200
    assert guesser_with_the_key.status_code == 429


async def test_behind_a_proxy_one_clients_guesses_do_not_lock_out_another(
    tmp_path: Path,
) -> None:
    """Every request comes from the proxy's address; the client is the one the proxy's
    header names, and each client has its own refused sign-ins."""
    env = {
        "AUTH": "keys",
        "AUTH_FAILURE_BURST": "3",
        "AUTH_FAILURE_EVERY_S": "60",
        "TRUSTED_PROXIES": "127.0.0.0/8",  # the test client is the proxy
    }
    async with running_service(tmp_path, None, env=env) as service:
        key, _ = await make_key(service, "alice")

        async def status(client: str, credential: str) -> int:
            headers = {"Authorization": f"Bearer {credential}", "X-Forwarded-For": client}
            return (await service.client.get("/api/conversations", headers=headers)).status_code

        guesses = [await status("198.51.100.7", "fo_guess") for _ in range(5)]
        other = await status("203.0.113.5", key)
        guesser_with_the_key = await status("198.51.100.7", key)
    assert guesses == [401, 401, 401, 429, 429]
    assert (other, guesser_with_the_key) == (200, 429)


async def test_the_access_line_names_the_callers_user_and_tenant(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        async with running_service(tmp_path, None, env={"AUTH": "keys"}) as service:
            key, _ = await make_key(service, "carol", user="carol", tenant="globex")
            await service.client.get("/api/conversations", headers={"X-API-Key": key})
            await service.client.get("/api/usage")
    lines = {
        (record.path, record.status): (record.user, record.tenant)  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name == "service.access" and hasattr(record, "path")
    }
    assert lines[("/api/conversations", 200)] == ("carol", "globex")
    assert lines[("/api/usage", 401)] == (None, None)


async def test_a_refused_key_is_logged_as_revoked_or_expired(
    counting_store: CountingStore, mock_clock: trio.testing.MockClock
) -> None:
    """The client hears only 401; the log says which (docs/security.md)."""
    revoked = await new_key(counting_store)
    record = await counting_store.read(lambda c: find_key_by_hash(c, key_hash(revoked)))
    assert record is not None
    await counting_store.read(lambda c: revoke_key(c, key_id=record.id, tenant=None))
    expired, _ = await counting_store.read(
        lambda c: issue_key(
            c,
            user="alice",
            tenant="acme",
            role="user",
            scopes=frozenset(),
            expires_in=timedelta(microseconds=1),
            name=None,
        )
    )
    auth = authenticator(counting_store, "0")
    with pytest.raises(Unauthenticated, match=rf"key {record.id} is revoked"):
        await auth.principal_for(revoked)
    with pytest.raises(Unauthenticated, match=r"key key_\w+ expired"):
        await auth.principal_for(expired)


# Mutants of `make mutation` that no test kills, judged equivalent or not worth a test:
# - authenticate.py `"jwt" in self.modes and self.tokens is not None` to `or`: the
#   service builds a TokenVerifier exactly when AUTH has jwt (resources.py), so both
#   halves are always equal.
# - authenticate.py `len(self._cache) >= CACHE_MAX` to `>`: the cache may hold one entry
#   more than CACHE_MAX (10,000) before it is cleared. Not equivalent, but pinning it
#   costs 10,000 store reads per run for one entry of memory.
# - tokens.py `fits`, either `return False` replaced by `return None`: both are false to its
#   one caller, which only tests the answer's truth (and mypy refuses a None from a
#   function typed `-> bool`, so `make lint` would).
