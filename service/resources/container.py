"""What a running service holds (the container; opening.py makes one from the settings):
settings, ensembles, the LLM client, who the caller is, lifecycle, the store, the runs and
background jobs in progress, limits, the relay.

    resources: Resources = current_app.extensions["fanout"]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from ..auth.authenticate import Authenticator
from ..auth.failures import FailedAttempts, SignInLimit
from ..client_address import Network
from ..ensemble import EnsembleStore
from ..lifecycle import Lifecycle
from ..limits import Limiter
from ..llm import ChatModel
from ..runs import LiveRuns
from ..runs.jobs import Jobs
from ..runs.relay import RedisRelay
from ..settings import Settings
from ..storage import Store
from ..storage.prices import Price


@dataclass
class Resources:
    settings: Settings
    ensembles: EnsembleStore
    model: ChatModel
    # Who the caller is (AUTH).
    authenticator: Authenticator
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    # None when DATABASE_URL=none: nothing is kept.
    store: Store | None = None
    # The runs in progress here, for a second request that joins or resumes one.
    live: LiveRuns = field(default_factory=LiveRuns)
    # Background jobs running here (evaluations), for their progress and to stop them.
    jobs: Jobs = field(default_factory=Jobs)
    # Where runs that outlive their response run (`on_disconnect: "continue"`); set while
    # the server serves.
    runs: trio.Nursery | None = None
    # LIMITS_FILE's limits, in memory or in Redis; None without a LIMITS_FILE.
    limiter: Limiter | None = None
    # With REDIS_URL: runs relayed live to the other instances.
    relay: RedisRelay | None = None
    trusted_proxies: tuple[Network, ...] = ()
    # PRICES_FILE's table, when there is one.
    prices: dict[str, Price] | None = None
    # Failed sign-ins per client address (in Redis with REDIS_URL).
    failed_attempts: SignInLimit = field(default_factory=FailedAttempts)
