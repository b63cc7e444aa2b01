"""Every ensemble the README and examples/ show is one the service accepts as it stands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.ensemble import parse_ensemble
from service.limits import load_policy
from service.resources import load_configured_ensemble
from service.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
# The README shows ensembles, and one limits file (its sections are [default], [anonymous]...).
LIMITS_BLOCKS = [block for block in TOML_BLOCKS if block.lstrip().startswith("[default]")]
README_BLOCKS = [block for block in TOML_BLOCKS if block not in LIMITS_BLOCKS]
KEYS = {"OPENAI_API_KEY": "sk-test", "VLLM_API_KEY": "test", "LLM_KEY": "sk-test"}


def test_there_are_examples_for_openai_ollama_and_vllm() -> None:
    assert {path.stem for path in EXAMPLES} >= {"openai", "ollama", "vllm", "mixed"}
    assert len(README_BLOCKS) >= 4


@pytest.mark.parametrize("block", README_BLOCKS)
def test_each_ensemble_in_the_readme_is_valid(block: str) -> None:
    # Prompt files named in the README are the ones in examples/.
    context = {"base_dir": ROOT / "examples", "files": {}}
    ensemble = parse_ensemble(block, source="README.md", context=context)
    assert ensemble.agents


def test_the_limits_in_the_readme_are_valid(tmp_path: Path) -> None:
    assert len(LIMITS_BLOCKS) == 1
    path = tmp_path / "limits.toml"
    path.write_text(LIMITS_BLOCKS[0])
    policy = load_policy(path)
    assert policy.tenant_budget("acme") == 5_000_000


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_each_example_starts_with_its_keys_set(path: Path) -> None:
    mock = path.stem.startswith("mock")
    env = {"ENSEMBLE_FILE": str(path), "USE_LLM_MOCK": "true" if mock else "false", **KEYS}
    ensemble = load_configured_ensemble(load_settings(env, dotenv_path=None))
    for member in ensemble.members:
        for target in ensemble.targets(member):
            assert target.endpoint is not None
            if not mock:
                assert target.endpoint.base_url.startswith(("http://", "https://"))
