"""Who is asking: the principal every stored row belongs to and every query takes, resolved
once per request from an API key or a JWT (or `anonymous` with AUTH=none)."""

from ..principal import ANONYMOUS, DEFAULT_TENANT, SCOPES, Principal, Role

__all__ = ["ANONYMOUS", "DEFAULT_TENANT", "SCOPES", "Principal", "Role"]
