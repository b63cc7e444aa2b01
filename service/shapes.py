"""The pydantic base of every published shape, and the shapes both a run's events and the
API's answers carry. Below `events` and `api`, so both can build on them.

    class Health(Shape):
        status: str
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Shape(BaseModel):
    """A response body: exactly these fields, nothing more."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenUsage(Shape):
    prompt_tokens: int
    completion_tokens: int


class Timings(Shape):
    agents_ms: dict[str, float]
    first_token_ms: float | None
    total_ms: float


class EventError(Shape):
    code: str = Field(description="Why: see the README's table of error codes")
    message: str


class AgentCounts(Shape):
    succeeded: int
    failed: int
    cut: int


class Cost(Shape):
    total_usd: float | None = Field(
        description="US dollars of every call of the run, the wasted ones included; null "
        "when a price is not known"
    )
    members: dict[str, float | None] = Field(
        description="Each member's dollars over the calls whose answers the run used, in "
        "every step (null: its price is unknown)"
    )
    wasted_usd: float | None = Field(
        default=None,
        description="Dollars of the calls the run paid for and did not use: stragglers cut, "
        "hedges that lost, calls that failed after the provider began to answer; part of "
        "`total_usd`. Null when a price is not known; absent on runs stored before it",
    )


class Charge(Shape):
    requests: int
    tokens: int
