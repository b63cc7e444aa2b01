"""The ensemble: which agents answer, and which summarizer combines their answers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_AGENTS = 16

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
]
Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Member(BaseModel):
    """One LLM role in the ensemble. `model` and `timeout_s` fall back to the settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    system_prompt: Prompt
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None


class Agent(Member):
    pass


class Summarizer(Member):
    pass


class Ensemble(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    agents: Annotated[tuple[Agent, ...], Field(min_length=1, max_length=MAX_AGENTS)]
    summarizer: Summarizer

    @model_validator(mode="after")
    def _names_are_unique(self) -> Ensemble:
        seen: set[str] = set()
        for member in (*self.agents, self.summarizer):
            if member.name in seen:
                raise ValueError(f"the name {member.name!r} is used twice; names must be unique")
            seen.add(member.name)
        return self

    def with_defaults(self, *, model: str, agent_timeout_s: float) -> Ensemble:
        """A copy in which every member has a model and every agent a timeout."""

        def fill(member: Member) -> dict[str, object]:
            return {"model": member.model or model}

        agents = tuple(
            agent.model_copy(
                update={**fill(agent), "timeout_s": agent.timeout_s or agent_timeout_s}
            )
            for agent in self.agents
        )
        summarizer = self.summarizer.model_copy(update=fill(self.summarizer))
        return self.model_copy(update={"agents": agents, "summarizer": summarizer})
