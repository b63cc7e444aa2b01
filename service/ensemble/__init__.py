"""The ensemble file: the agents, the summarizer, and how they are loaded and validated."""

from .loader import EnsembleError, load_ensemble, parse_ensemble
from .model import MAX_AGENTS, Agent, Ensemble, Member, Summarizer

__all__ = [
    "MAX_AGENTS",
    "Agent",
    "Ensemble",
    "EnsembleError",
    "Member",
    "Summarizer",
    "load_ensemble",
    "parse_ensemble",
]
