"""The limits a caller gets, from LIMITS_FILE (TOML): defaults, then overrides per role,
tenant and key, each field optional; callers without identity get `[anonymous]`, per client
address.

    [default]                      # every signed-in caller without a more specific section
    requests_per_minute = 60
    burst = 10
    concurrent_streams = 4
    tokens_per_minute = 200000
    [anonymous]
    requests_per_minute = 10
    burst = 3
    [roles.admin]
    requests_per_minute = 600
    [tenants.acme]
    tokens_per_day = 5000000       # the tenant's budget, shared by its users
    [keys.key_3f2a...]
    concurrent_streams = 1

A later, more specific section wins field by field: default, then the role, then the
tenant, then the key. A field left out of every section is no limit.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..principal import Principal


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: float | None = None
    burst: int | None = None
    concurrent_streams: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    # Tokens reserved for a member without `max_tokens` (its answer's size is not known).
    estimate_tokens_per_call: int = 1000

    def over(self, section: dict[str, Any]) -> Limits:
        """These limits with a section's fields in their place."""
        return replace(self, **section)


_FIELDS = {f.name: f for f in fields(Limits)}


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    default: dict[str, Any]
    anonymous: dict[str, Any]
    roles: dict[str, dict[str, Any]]
    tenants: dict[str, dict[str, Any]]
    keys: dict[str, dict[str, Any]]

    def for_caller(self, principal: Principal, *, anonymous: bool) -> Limits:
        if anonymous:
            return Limits().over(self.anonymous)
        limits = Limits().over(self.default)
        limits = limits.over(self.roles.get(principal.role, {}))
        limits = limits.over(self.tenants.get(principal.tenant, {}))
        if principal.key_id is not None:
            limits = limits.over(self.keys.get(principal.key_id, {}))
        return limits

    def tenant_budget(self, tenant: str) -> int | None:
        """The tenant's daily token budget: `[tenants.NAME]`, else `[default]`."""
        own = self.tenants.get(tenant, {})
        budget = own.get("tokens_per_day", self.default.get("tokens_per_day"))
        return int(budget) if budget is not None else None


NO_LIMITS = LimitPolicy(default={}, anonymous={}, roles={}, tenants={}, keys={})


def _section(where: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: must be a table")
    checked: dict[str, Any] = {}
    for name, value in table.items():
        if name not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise ValueError(f"{where}.{name}: not a limit (known: {known})")
        number_types = (int, float) if name == "requests_per_minute" else (int,)
        if isinstance(value, bool) or not isinstance(value, number_types) or value <= 0:
            raise ValueError(f"{where}.{name}: must be a positive number")
        checked[name] = value
    return checked


def _group(data: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    group = data.get(name, {})
    if not isinstance(group, dict):
        raise ValueError(f"[{name}]: must hold tables, e.g. [{name}.NAME]")
    return {key: _section(f"{name}.{key}", table) for key, table in group.items()}


def load_policy(path: Path) -> LimitPolicy:
    """LIMITS_FILE, checked; ValueError naming the file and the field otherwise."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    unknown = set(data) - {"default", "anonymous", "roles", "tenants", "keys"}
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    try:
        return LimitPolicy(
            default=_section("default", data.get("default", {})),
            anonymous=_section("anonymous", data.get("anonymous", {})),
            roles=_group(data, "roles"),
            tenants=_group(data, "tenants"),
            keys=_group(data, "keys"),
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
