"""Who may call what: the caller is identified once, before any route runs, and each route
says what it needs. A route that says nothing is refused (deny by default).

    @routes.get("/api/conversations")
    @requires("history")
    async def conversations(): principal = current_principal()

`open` routes (health checks) need nothing; `metrics` takes an admin or METRICS_TOKEN.
A refusal says only that it was refused: whether a key exists, was revoked or has expired
is written to the log, not to the client.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from quart import current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..auth.errors import Unauthenticated
from ..client_address import client_address
from ..errors import NotAllowed, NotAuthenticated
from ..limits.sign_ins import TooManySignIns
from ..principal import Principal
from ..resources import Resources
from ..telemetry.metrics import METRICS
from ..telemetry.request import CURRENT_REQUEST

log = logging.getLogger(__name__)

Requirement = Literal["open", "metrics", "process", "history", "admin"]
F = TypeVar("F", bound=Callable[..., Any])


# The caller of an open route, or a scraper with METRICS_TOKEN: no rows, no scopes.
NOBODY = Principal(user="nobody", scopes=frozenset())


def requires(requirement: Requirement) -> Callable[[F], F]:
    def mark(view: F) -> F:
        view.required = requirement  # type: ignore[attr-defined]
        return view

    return mark


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


def _required_where_unrouted() -> Requirement:
    """What a request no route took needs: `open` when its path is an open route that does
    not take its method, else what the most guarded routes need."""
    routed = request.routing_exception
    if isinstance(routed, MethodNotAllowed) and routed.valid_methods:
        method = next(iter(routed.valid_methods))
        # (Matching with a method the router has just listed does not fail; if it ever did,
        # the path would need what the most guarded routes need, as below.)
        with contextlib.suppress(HTTPException):
            endpoint, _ = current_app.url_map.bind("").match(request.path, method=method)
            if getattr(current_app.view_functions.get(endpoint), "required", None) == "open":
                return "open"
    return "process"


def caller_address() -> str:
    """The client's address (see client_address.py), worked out once per request: the
    refused sign-ins limit and the rate limits count the same address."""
    address: str | None = g.get("client_address")
    if address is None:
        resources: Resources = current_app.extensions["fanout"]
        header = resources.settings.forwarded_header
        address = client_address(
            request.remote_addr or "unknown",
            # Every line of the header: a proxy may add its own line after the client's.
            chain=", ".join(request.headers.getlist(header)) or None,
            header=header,
            trusted=resources.trusted_proxies,
        )
        g.client_address = address
    return address


def _credentials() -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key") or None


async def identify_caller() -> None:
    """Quart's before-request hook: set `g.principal`, or refuse with 401, 403 or 429."""
    resources: Resources = current_app.extensions["fanout"]
    view = current_app.view_functions.get(request.endpoint or "")
    # An unknown route (404) or method (405) still needs a caller: nothing is said to
    # someone unidentified, not even which routes exist; but a 405 on an open route is no
    # secret, so anyone is told it.
    required: Requirement | None = (
        getattr(view, "required", None) if view else _required_where_unrouted()
    )
    g.principal = NOBODY
    if required == "open":
        return
    token = _credentials()
    metrics_token = resources.settings.metrics_token
    if (
        required == "metrics"
        and token is not None
        and metrics_token is not None
        and hmac.compare_digest(token.encode(), metrics_token.get_secret_value().encode())
    ):
        return
    authenticator = resources.authenticator
    address = caller_address()
    failures = resources.failed_attempts
    if not authenticator.anonymous:
        verdict = await failures.check(address)
        if not verdict.allowed:
            METRICS.rate_limited.labels(limit="sign_ins").inc()
            raise TooManySignIns(verdict, burst=failures.burst, every_s=failures.every_s)
    try:
        principal = await authenticator.principal_for(token)
    except Unauthenticated as exc:
        if token is not None:  # a guess, not a client that sent nothing
            await failures.failed(address)
        log.info("refused a caller from %s: %s", address, exc)
        raise NotAuthenticated() from None
    g.principal = principal
    record = CURRENT_REQUEST.get()
    if record is not None:
        record.user, record.tenant = principal.user, principal.tenant
    needed = "admin" if required == "metrics" else required
    if needed is None:
        raise NotAllowed("this route is not open to anyone")
    if view is not None and not principal.may(needed):
        raise NotAllowed(f"this needs the {needed} scope")
