"""What one pipeline run is given: the request, the ensemble, the model, its limits.

    run = RunContext(
        request=PipelineRequest(message="Why is the sky blue?", message_id="m-1"),
        ensemble=ensemble,
        model=model,
        request_timeout_s=120.0,
    )
    nursery.start_soon(run_pipeline, run, send)

The api layer builds one per request and nothing changes it afterwards: a reload of the
ensembles cannot alter what a run in flight sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..ensemble import Ensemble, Summarizer
from ..llm import ChatModel, MockChatModel
from .retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class PipelineRequest:
    message: str
    message_id: str
    conversation_id: str | None = None
    # The ensemble the client asked for; None for the default.
    ensemble: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier message of the conversation."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True, slots=True)
class AgentStreaming:
    """Agents stream their answers, each piece an `agent.delta`; pieces that come within
    `interval_s` of the first one waiting (or until `max_chars` wait) leave as one."""

    interval_s: float = 0.05
    max_chars: int = 512


# Shared by every run that brings none: its random generator alone was 2.5 KB per stream.
DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class RunContext:
    """`ensemble_version` names the loaded version `ensemble` came from, for events and logs;
    `request_timeout_s` bounds the whole run, agents and summary."""

    request: PipelineRequest
    ensemble: Ensemble
    model: ChatModel
    request_timeout_s: float
    ensemble_version: str = ""
    retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY
    # The conversation's earlier turns, oldest first: every member sees them as chat history.
    history: tuple[Turn, ...] = ()
    # Instructions a client sent along (an OpenAI client's system messages): every member
    # gets them beside its own system prompt.
    client_context: str | None = None
    # A client's cap on the answer's length: the summarizer's max_tokens, when smaller.
    summary_max_tokens: int | None = None
    # How agents stream their answers to the client; None: each answer arrives whole.
    agent_streaming: AgentStreaming | None = None

    @property
    def summarizer(self) -> Summarizer:
        """The ensemble's summarizer, its max_tokens capped by the client's, if smaller."""
        summarizer = self.ensemble.summarizer
        if summarizer is None:
            raise LookupError("this ensemble's strategy has no summarizer")
        cap = self.summary_max_tokens
        if cap is not None and (summarizer.max_tokens is None or cap < summarizer.max_tokens):
            return summarizer.model_copy(update={"max_tokens": cap})
        return summarizer

    @property
    def free(self) -> bool:
        """The mock answers this run: its calls cost nothing, whatever model they name."""
        return isinstance(self.model, MockChatModel)

    def log_context(self, member: str | None = None) -> dict[str, object]:
        """The fields every log line of this run (and of `member`, if given) carries."""
        context: dict[str, object] = {"message_id": self.request.message_id}
        if self.ensemble_version:
            context["ensemble_version"] = self.ensemble_version
        if self.request.conversation_id is not None:
            context["conversation_id"] = self.request.conversation_id
        if member is not None:
            context["agent"] = member
        return context
