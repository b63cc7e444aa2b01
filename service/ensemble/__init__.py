"""The ensemble file: the agents, the summarizer, and how they are loaded and validated."""

from .loader import EnsembleError, load_ensemble, parse_ensemble
from .model import (
    DEFAULT_PROVIDER,
    MAX_AGENTS,
    Agent,
    Ensemble,
    Fallback,
    Member,
    Provider,
    Summarizer,
    Target,
)

__all__ = [
    "DEFAULT_PROVIDER",
    "MAX_AGENTS",
    "Agent",
    "Ensemble",
    "EnsembleError",
    "Fallback",
    "Member",
    "Provider",
    "Summarizer",
    "Target",
    "load_ensemble",
    "parse_ensemble",
]
