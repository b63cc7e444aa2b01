"""The ensemble file: the agents, the summarizer, and how they are loaded and validated."""

from .loader import (
    DEFAULT_ENSEMBLE,
    EnsembleError,
    LoadedEnsembles,
    UnknownEnsemble,
    load_ensemble,
    load_ensembles,
    parse_ensemble,
)
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
from .store import EnsembleStore, LoadProblem

__all__ = [
    "DEFAULT_ENSEMBLE",
    "DEFAULT_PROVIDER",
    "MAX_AGENTS",
    "Agent",
    "Ensemble",
    "EnsembleError",
    "EnsembleStore",
    "Fallback",
    "LoadProblem",
    "LoadedEnsembles",
    "Member",
    "Provider",
    "Summarizer",
    "Target",
    "UnknownEnsemble",
    "load_ensemble",
    "load_ensembles",
    "parse_ensemble",
]
