"""What tokens cost, per model, from PRICES_FILE (optional): usage reports add a cost.

# prices.toml: price per million tokens
[models."gpt-4o-mini"]
input = 0.15
output = 0.60
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: float
    output_per_million: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return round(
            (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million)
            / 1_000_000,
            6,
        )


def load_prices(path: Path) -> dict[str, Price]:
    """The price table; ValueError naming the file and the model for anything malformed."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ValueError(f"{path}: [models] must be a table of model names")
    prices = {}
    for model, entry in models.items():
        try:
            prices[model] = Price(float(entry["input"]), float(entry["output"]))
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: models.{model}: needs numbers `input` and `output`") from exc
    return prices
