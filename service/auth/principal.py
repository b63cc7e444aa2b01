"""The caller, resolved once at the edge of a request and passed down, never re-parsed.

principal = ANONYMOUS                  # until authentication is configured
store.conversations(principal)          # every query is scoped to one owner
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """`user` owns what the caller stores; nothing is read or written without one."""

    user: str

    def __post_init__(self) -> None:
        if not self.user:
            raise ValueError("a principal needs a user")


ANONYMOUS = Principal(user="anonymous")
