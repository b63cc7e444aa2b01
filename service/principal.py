"""The caller, resolved once at the edge of a request and passed down, never re-parsed.

principal = ANONYMOUS                       # AUTH=none: everyone is `anonymous`
principal.may("history")                    # what its role and scopes allow
store.conversations(principal, ...)         # every query is scoped to its owner
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["user", "admin"]
# What a key may be limited to: running messages, reading and deleting history, administering.
SCOPES = frozenset({"process", "history", "admin"})
DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks. Stored rows belong to (`tenant`, `user`); an `admin` may also read its
    tenant's rows and use /admin/*. `scopes` narrow what a key may do; `key_id` names the
    API key used, if any (never the key itself)."""

    user: str
    tenant: str = DEFAULT_TENANT
    role: Role = "user"
    scopes: frozenset[str] = field(default=SCOPES)
    key_id: str | None = None

    def __post_init__(self) -> None:
        if not self.user:
            raise ValueError("a principal needs a user")
        if not self.tenant:
            raise ValueError("a principal needs a tenant")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and "admin" in self.scopes

    def may(self, scope: str) -> bool:
        """True when this caller's role and scopes allow `scope`."""
        if scope == "admin":
            return self.is_admin
        return scope in self.scopes


# Every caller when AUTH=none: no access control at all, so an admin (what a server without
# authentication always was); PRODUCTION=true refuses it unless ALLOW_ANONYMOUS=true.
ANONYMOUS = Principal(user="anonymous", role="admin")
