"""Rate limits, concurrency and token budgets per caller: the policy (LIMITS_FILE), two
backends (this process's memory, or Redis shared by every instance), admission before a run
and its settlement after."""

from ..errors import LimiterUnavailable, RateLimited
from .admission import Admission, Limiter
from .backend import LimiterBackend, LimiterError, Verdict
from .memory import MemoryBackend
from .policy import NO_LIMITS, LimitPolicy, Limits, load_policy
from .settlement import Settlement

__all__ = [
    "NO_LIMITS",
    "Admission",
    "LimitPolicy",
    "Limiter",
    "LimiterBackend",
    "LimiterError",
    "LimiterUnavailable",
    "Limits",
    "MemoryBackend",
    "RateLimited",
    "Settlement",
    "Verdict",
    "load_policy",
]
