"""What a call cost in US dollars, from the tokens its provider reported.

    dollars = price_of(ensemble, member_target, usage)   # Decimal, or None when unknown

The price comes from the ensemble file's `[prices."MODEL"]` if it has one, else from the
`genai-prices` package's bundled table (no network), matched by model and provider URL. A
model on a local server (Ollama, vLLM on localhost) costs nothing unless the file says
otherwise; a model nobody prices is unknown (None), never guessed.
"""

from __future__ import annotations

from decimal import Decimal

import genai_prices

from ..ensemble import Ensemble, Target
from ..llm import Usage
from ..urls import is_local_url

MILLION = Decimal(1_000_000)


def price_of(ensemble: Ensemble, target: Target, usage: Usage, base_url: str) -> Decimal | None:
    """The cost of one call to `target` that used `usage`; `base_url` is its server's."""
    own = ensemble.prices.get(target.model)
    if own is not None:
        return (
            Decimal(str(own.input_per_million)) * usage.prompt_tokens
            + Decimal(str(own.output_per_million)) * usage.completion_tokens
        ) / MILLION
    if is_local_url(base_url):
        return Decimal(0)
    try:
        calculated = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens
            ),
            target.model,
            provider_api_url=base_url,
        )
    except LookupError:
        return None
    return Decimal(calculated.total_price)
