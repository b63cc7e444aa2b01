"""What a running service holds (container.py) and how it is opened and closed
(opening.py)."""

from .container import Resources
from .opening import (
    build_model,
    check_ensemble_can_run,
    default_provider,
    load_configured_ensemble,
    load_configured_ensembles,
    open_resources,
)

__all__ = [
    "Resources",
    "build_model",
    "check_ensemble_can_run",
    "default_provider",
    "load_configured_ensemble",
    "load_configured_ensembles",
    "open_resources",
]
