"""Why a request was refused before it ran. The reason is for the log only: a client is told
neither whether a key exists, nor that it was revoked or expired."""

from __future__ import annotations


class Unauthenticated(Exception):
    """No credentials, or credentials that do not identify anyone (the message says which,
    for the log)."""
