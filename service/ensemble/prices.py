"""What a call cost in US dollars, from the tokens its provider reported.

    dollars = price_of(ensemble, target, usage, base_url)   # Decimal, or None when unknown
    costs = run_cost(ensemble, usage_by_member, model_by_member)  # what a run's calls cost
    dollars = call_cost(ensemble, target, usage, free=True)  # one call, as run_cost prices it

The price comes from the ensemble file's `[prices."MODEL"]` if it has one, else from the
`genai-prices` package's bundled table (no network), matched by model and provider URL. A
model on a local server (Ollama, vLLM on localhost) costs nothing unless the file says
otherwise; a model nobody prices is unknown (None), never guessed. A call the mock answers
(`free`) costs nothing, whatever model it names (no provider was paid), unless the file
prices that model itself: an explicit price rehearses a budget offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import genai_prices

from ..llm import Usage
from ..urls import is_local_url
from .model import Ensemble, Target

MILLION = Decimal(1_000_000)


def price_of(
    ensemble: Ensemble, target: Target, usage: Usage, base_url: str | None
) -> Decimal | None:
    """The cost of one call to `target` that used `usage`; `base_url` is its server's (None:
    not known here, the table is asked by the model's name alone)."""
    own = ensemble.prices.get(target.model)
    if own is not None:
        return (
            Decimal(str(own.input_per_million)) * usage.prompt_tokens
            + Decimal(str(own.output_per_million)) * usage.completion_tokens
        ) / MILLION
    if base_url is not None and is_local_url(base_url):
        return Decimal(0)
    tokens = genai_prices.Usage(
        input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens
    )
    try:
        calculated = genai_prices.calc_price(tokens, target.model, provider_api_url=base_url)
    except LookupError:
        return None
    return Decimal(calculated.total_price)


def call_cost(
    ensemble: Ensemble,
    target: Target,
    usage: Usage,
    *,
    default_base_url: str | None = None,
    free: bool = False,
) -> Decimal | None:
    """One call's dollars, as `run_cost` prices each member's: `free` (the mock answered)
    costs nothing but where the ensemble file prices the model itself."""
    if free and target.model not in ensemble.prices:
        return Decimal(0)
    base_url = target.endpoint.base_url if target.endpoint is not None else default_base_url
    return price_of(ensemble, target, usage, base_url)


def run_cost(
    ensemble: Ensemble,
    usage: Mapping[str, Usage],
    models: Mapping[str, str],
    *,
    default_base_url: str | None = None,
    free: bool = False,
) -> dict[str, float | None]:
    """Each member's dollars for the tokens it used in a run (its every call), by the model
    that answered; None where the price is not known. `default_base_url` is the server of a
    target that names none (an ensemble used without its defaults filled in); `free`: the
    mock answered, a call costs $0 but where the ensemble file prices its model."""
    members = {member.name: member for member in ensemble.members}
    costs: dict[str, float | None] = {}
    for name, used in usage.items():
        member = members.get(name)
        if member is None:
            costs[name] = None
            continue
        targets = ensemble.targets(member)
        target = next((t for t in targets if t.model == models.get(name)), targets[0])
        price = call_cost(ensemble, target, used, default_base_url=default_base_url, free=free)
        costs[name] = None if price is None else round(float(price), 8)
    return costs
