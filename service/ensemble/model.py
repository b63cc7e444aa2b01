"""The ensemble: which agents answer, which summarizer combines them, and where each call goes.

An ensemble file names providers once (`[providers.NAME]`) and members refer to them; a member
may instead give its own `base_url`. After `with_defaults`, every member names a provider that
exists, has a model, and every agent has a timeout, so `targets(member)` is all a caller needs:

    ensemble = parse_ensemble(text, source="e.toml").with_defaults(
        model="gpt-4o-mini", agent_timeout_s=30, default_provider=Provider(base_url=url)
    )
    for target in ensemble.targets(ensemble.agents[0]):   # the primary, then the fallbacks
        print(target.endpoint.base_url, target.model)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..llm import Endpoint
from ..urls import check_base_url
from .templates import (
    AGENT_VARIABLES,
    DEFAULT_AGENT_PROMPT,
    DEFAULT_SUMMARY_PROMPT,
    STEP_VARIABLES,
    SUMMARIZER_VARIABLES,
    check_template,
)

MAX_AGENTS = 16
MAX_FALLBACKS = 4
DEFAULT_PROVIDER = "default"

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
]
Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
BaseUrl = Annotated[str, AfterValidator(check_base_url)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
# Visible ASCII, with inner spaces: what every HTTP/1.1 client sends without complaint.
HeaderValue = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")]
KEY_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
FRAMING_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "content-type"}
)


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name in headers:
        if name.lower() in KEY_HEADERS:
            raise ValueError(
                f"the header {name!r} would put a key in the file; "
                "name the environment variable that holds the key with api_key_env instead"
            )
        if name.lower() in FRAMING_HEADERS:
            raise ValueError(f"the header {name!r} is set by the HTTP client and cannot be changed")
    return headers


Headers = Annotated[dict[HeaderName, HeaderValue], AfterValidator(_check_headers)]


class Provider(BaseModel):
    """An OpenAI-compatible server. The key stays in the environment, named by `api_key_env`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: BaseUrl
    api_key_env: EnvName | None = None
    headers: Headers = Field(default_factory=dict)
    max_connections: Annotated[int, Field(ge=1, le=100_000)] = 1000

    def endpoint(self, name: str) -> Endpoint:
        return Endpoint(
            name=name,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            headers=tuple(sorted(self.headers.items())),
            max_connections=self.max_connections,
        )


class Fallback(BaseModel):
    """A model tried when the one before it failed; on the member's provider unless named."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelName
    provider: Name | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One model on one server: what a single call needs besides the messages.

    `endpoint` None means the chat model's own default server (an ensemble used without
    `with_defaults`, as in tests).
    """

    endpoint: Endpoint | None
    model: str


class Member(BaseModel):
    """One LLM role in the ensemble. Unset `model` and `timeout_s` fall back to the settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    template_variables: ClassVar[frozenset[str]] = AGENT_VARIABLES

    name: Name
    system_prompt: Prompt
    system_prompt_file: str | None = None
    prompt: Prompt | None = None
    prompt_file: str | None = None
    model: ModelName | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    provider: Name | None = None
    base_url: BaseUrl | None = None
    api_key_env: EnvName | None = None
    headers: Headers = Field(default_factory=dict)
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    fallback_models: Annotated[
        tuple[ModelName | Fallback, ...], Field(max_length=MAX_FALLBACKS)
    ] = ()
    retries: Annotated[int, Field(ge=0, le=5)] = 2

    @model_validator(mode="before")
    @classmethod
    def _read_prompt_files(cls, data: Any, info: ValidationInfo) -> Any:
        """Put the text of `system_prompt_file` / `prompt_file` in place of the path's field.

        Paths are relative to the ensemble file (`base_dir` in the validation context); each
        file read is added to the context's `files`, so a reload can watch it.
        """
        if not isinstance(data, dict):
            return data
        data = dict(data)
        context = info.context if isinstance(info.context, dict) else {}
        for text_key in ("system_prompt", "prompt"):
            file_key = f"{text_key}_file"
            if file_key not in data:
                continue
            if text_key in data:
                raise ValueError(f"give {text_key} or {file_key}, not both")
            path_text = str(data[file_key])
            text = read_prompt_file(path_text, context)
            try:
                check_template(text, cls.template_variables)
            except ValueError as exc:
                raise ValueError(f"{file_key} {path_text}: {exc}") from exc
            data[text_key] = text
        return data

    @model_validator(mode="after")
    def _one_way_to_name_the_server(self) -> Member:
        if self.provider is not None and self.base_url is not None:
            raise ValueError("give either provider or base_url, not both")
        if self.api_key_env is not None and self.base_url is None:
            raise ValueError("api_key_env needs base_url here (or set it on the provider)")
        return self

    def as_agent(self) -> Agent:
        """This member asked as an agent is (a selector's or a judge's call: its retries,
        fallbacks and timeout), its fields as they are, unchecked again."""
        return Agent.model_construct(**dict(self))

    @property
    def fallbacks(self) -> tuple[Fallback, ...]:
        return tuple(
            Fallback(model=entry) if isinstance(entry, str) else entry
            for entry in self.fallback_models
        )


class Agent(Member):
    hedge_after_ms: Annotated[float, Field(gt=0)] | None = None

    @field_validator("system_prompt", "prompt")
    @classmethod
    def _template_renders(cls, source: str | None) -> str | None:
        if source is not None:
            check_template(source, AGENT_VARIABLES)
        return source

    @property
    def user_prompt(self) -> str:
        return self.prompt or DEFAULT_AGENT_PROMPT


class Summarizer(Member):
    template_variables: ClassVar[frozenset[str]] = SUMMARIZER_VARIABLES

    @field_validator("system_prompt", "prompt")
    @classmethod
    def _template_renders(cls, source: str | None) -> str | None:
        if source is not None:
            check_template(source, SUMMARIZER_VARIABLES)
        return source

    @property
    def user_prompt(self) -> str:
        return self.prompt or DEFAULT_SUMMARY_PROMPT


MAX_FILE_BYTES = 1 << 20


def read_text_file(path: Path) -> str:
    """A regular UTF-8 file of at most 1 MiB: never a FIFO or a device that blocks a read."""
    if not path.is_file():
        raise ValueError("not a regular file" if path.exists() else "no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    return path.read_text(encoding="utf-8")


def read_prompt_file(path_text: str, context: dict[str, Any]) -> str:
    """The text of a prompt file, found relative to the context's `base_dir`, checked as a
    template here so that an error in it names the file."""
    path = Path(path_text)
    if not path.is_absolute():
        path = Path(context.get("base_dir", ".")) / path
    files = context.get("files")
    if isinstance(files, dict):
        # Recorded before reading: a reload watches a file a refused edit names but lacks.
        files.setdefault(path, "")
    try:
        text = read_text_file(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read the prompt file {path}: {reason}") from exc
    if isinstance(files, dict):
        files[path] = text
    return text


def _inline_provider_name(member: Member) -> str:
    # A colon cannot appear in a provider's own name, so this never collides with one.
    return f"inline:{member.name}"


class ModelPrice(BaseModel):
    """What a model costs, in US dollars per million tokens (`[prices."MODEL"]`): for a model
    the bundled price table does not know, or a private price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_million: Annotated[float, Field(ge=0)]
    output_per_million: Annotated[float, Field(ge=0)]


StrategyName = Literal["summarize", "vote", "usc", "council", "moa", "debate"]
STRATEGY_NAMES: tuple[str, ...] = get_args(StrategyName)


class Deliberation(BaseModel):
    """The options of a strategy (`[deliberation]` in the file); each strategy reads its own,
    and an option the chosen strategy does not read is refused at load."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # debate: rounds in which every agent reads the others' answers and revises its own.
    rounds: Annotated[int, Field(ge=1, le=5)] = 2
    # moa: layers, the aggregator's (the summarizer's) included: N * (layers - 1) + 1 calls.
    layers: Annotated[int, Field(ge=2, le=5)] = 3
    # vote, and debate with final = "vote": one answer's text against the others' (exact,
    # after normalising case, spaces and end punctuation), or the answer most like the rest.
    vote: Literal["exact", "similar"] = "exact"
    # debate: the final answer is the summarizer's, or the vote of the last round.
    final: Literal["summary", "vote"] = "summary"
    # council: reviewers see the answers as "Response A, B..." in an order of their own.
    anonymize: bool = True
    # The most of each answer a member is shown in a later step (default: max_answer_chars).
    max_shown_chars: Annotated[int, Field(ge=100)] | None = None
    # Templates of the later steps (docs/ensemble.md lists their variables and defaults).
    revise_prompt: Prompt | None = None
    layer_prompt: Prompt | None = None
    review_prompt: Prompt | None = None
    select_prompt: Prompt | None = None

    @field_validator("revise_prompt", "layer_prompt", "review_prompt", "select_prompt")
    @classmethod
    def _template_renders(cls, source: str | None) -> str | None:
        if source is not None:
            check_template(source, STEP_VARIABLES)
        return source


# Which options each strategy reads; every other option set in the file is an error.
STRATEGY_OPTIONS: dict[str, frozenset[str]] = {
    "summarize": frozenset(),
    "vote": frozenset({"vote"}),
    "usc": frozenset({"max_shown_chars", "select_prompt"}),
    "council": frozenset({"anonymize", "max_shown_chars", "review_prompt"}),
    "moa": frozenset({"layers", "max_shown_chars", "layer_prompt"}),
    "debate": frozenset({"rounds", "final", "vote", "max_shown_chars", "revise_prompt"}),
}
# The summarizer's part in each strategy; None where no call needs it.
SUMMARIZER_ROLE: dict[str, str | None] = {
    "summarize": "summarizer",
    "vote": None,
    "usc": "selector",
    "council": "chairman",
    "moa": "aggregator",
    "debate": "summarizer",
}
# Agents a strategy needs at the least: a vote, a selection or a review of one answer
# means nothing.
MIN_AGENTS = {"vote": 2, "usc": 2, "council": 2, "debate": 2}


class Ensemble(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    providers: dict[Name, Provider] = Field(default_factory=dict)
    # How the members deliberate (service/pipeline/strategies.py), and its options.
    strategy: StrategyName = "summarize"
    deliberation: Deliberation = Field(default_factory=Deliberation)
    min_agents: Annotated[int, Field(ge=1)] = 1
    max_answer_chars: Annotated[int, Field(ge=100)] = 12_000
    straggler_grace_ms: Annotated[float, Field(ge=0)] | None = None
    agents: Annotated[tuple[Agent, ...], Field(min_length=1, max_length=MAX_AGENTS)]
    # None only where the strategy makes no call of its own (a vote).
    summarizer: Summarizer | None = None
    # Prices of models the bundled table lacks, or a price of one's own (evaluation/prices.py).
    prices: dict[ModelName, ModelPrice] = Field(default_factory=dict)

    @property
    def members(self) -> tuple[Member, ...]:
        return (*self.agents, self.summarizer) if self.summarizer else self.agents

    @property
    def summarizer_role(self) -> str | None:
        """What the summarizer does in this strategy (chairman, aggregator...); None: nothing."""
        if self.strategy == "debate" and self.deliberation.final == "vote":
            return None
        return SUMMARIZER_ROLE[self.strategy]

    @property
    def max_shown_chars(self) -> int:
        return self.deliberation.max_shown_chars or self.max_answer_chars

    @property
    def calls_per_request(self) -> int:
        """Upstream calls one request makes when every member answers at its first try."""
        n = len(self.agents)
        summary = 1 if self.summarizer_role else 0
        if self.strategy == "council":
            return 2 * n + summary
        if self.strategy == "moa":
            return n * (self.deliberation.layers - 1) + summary
        if self.strategy == "debate":
            return n * (self.deliberation.rounds + 1) + summary
        return n + summary

    @property
    def rounds_per_agent(self) -> int:
        """How many calls each agent makes in one request (its answers in every step)."""
        if self.strategy == "council":
            return 2
        if self.strategy == "moa":
            return self.deliberation.layers - 1
        if self.strategy == "debate":
            return self.deliberation.rounds + 1
        return 1

    def max_tokens_per_call(self) -> list[int | None]:
        """One entry per upstream call of a request (`calls_per_request` of them): the
        member's `max_tokens`, None where it sets none. What a token limit reserves."""
        per_call = [a.max_tokens for a in self.agents for _ in range(self.rounds_per_agent)]
        if self.summarizer_role is not None and self.summarizer is not None:
            per_call.append(self.summarizer.max_tokens)
        return per_call

    @model_validator(mode="after")
    def _strategy_fits(self) -> Ensemble:
        strategy = self.strategy
        role = self.summarizer_role
        if role is not None and self.summarizer is None:
            raise ValueError(f"summarizer: required by strategy {strategy!r} (its {role})")
        if role is None and self.summarizer is not None:
            why = "the last round's vote is the answer" if strategy == "debate" else "no call"
            raise ValueError(f"strategy {strategy!r} has no summarizer ({why}): remove it")
        least = MIN_AGENTS.get(strategy, 1)
        if len(self.agents) < least:
            raise ValueError(f"strategy {strategy!r} needs at least {least} agents")
        chosen = self.deliberation.model_fields_set
        if strategy == "debate" and self.deliberation.final == "summary" and "vote" in chosen:
            raise ValueError(
                'deliberation.vote is read only with final = "vote" (this debate ends with '
                "its summarizer)"
            )
        unread = sorted(chosen - STRATEGY_OPTIONS[strategy])
        if unread:
            users = [s for s in STRATEGY_NAMES if unread[0] in STRATEGY_OPTIONS[s]]
            owners = " or ".join(map(repr, users))
            raise ValueError(
                f"deliberation.{unread[0]} is an option of strategy {owners}, not of {strategy!r}"
            )
        return self

    @model_validator(mode="after")
    def _names_are_unique(self) -> Ensemble:
        seen: set[str] = set()
        for member in self.members:
            if member.name in seen:
                raise ValueError(f"the name {member.name!r} is used twice; names must be unique")
            seen.add(member.name)
        return self

    @model_validator(mode="after")
    def _quorum_is_reachable(self) -> Ensemble:
        if self.min_agents > len(self.agents):
            raise ValueError(
                f"min_agents is {self.min_agents} but only {len(self.agents)} agent(s) are listed"
            )
        return self

    @model_validator(mode="after")
    def _providers_exist(self) -> Ensemble:
        known = set(self.providers) | {DEFAULT_PROVIDER}
        for where, member in self._located_members():
            wanted = [(f"{where}.provider", member.provider)]
            wanted += [
                (f"{where}.fallback_models[{i}].provider", fallback.provider)
                for i, fallback in enumerate(member.fallbacks)
            ]
            for field, name in wanted:
                if name is not None and name not in known:
                    listed = ", ".join(sorted(self.providers)) or "none are defined"
                    raise ValueError(f"{field}: no provider named {name!r} ({listed})")
        return self

    def _located_members(self) -> list[tuple[str, Member]]:
        located: list[tuple[str, Member]] = [
            (f"agents[{i}]", agent) for i, agent in enumerate(self.agents)
        ]
        if self.summarizer is not None:
            located.append(("summarizer", self.summarizer))
        return located

    def with_defaults(
        self, *, model: str, agent_timeout_s: float, default_provider: Provider
    ) -> Ensemble:
        """A copy in which every member has a model and a provider, and every agent a timeout.

        Members that name no provider use `[providers.default]` if the file has one, else
        `default_provider` (the settings' LLM_BASE_URL and LLM_KEY).
        """
        providers = {DEFAULT_PROVIDER: default_provider, **self.providers}

        def fill(member: Member) -> dict[str, object]:
            provider = member.provider or DEFAULT_PROVIDER
            if member.base_url is not None:
                provider = _inline_provider_name(member)
                providers[provider] = Provider(
                    base_url=member.base_url, api_key_env=member.api_key_env
                )
            fallbacks = tuple(
                Fallback(model=f.model, provider=f.provider or provider) for f in member.fallbacks
            )
            return {
                "model": member.model or model,
                "provider": provider,
                "base_url": None,
                "api_key_env": None,
                "fallback_models": fallbacks,
            }

        agents = tuple(
            agent.model_copy(
                update={**fill(agent), "timeout_s": agent.timeout_s or agent_timeout_s}
            )
            for agent in self.agents
        )
        summarizer = (
            self.summarizer.model_copy(update=fill(self.summarizer)) if self.summarizer else None
        )
        return self.model_copy(
            update={"agents": agents, "summarizer": summarizer, "providers": providers}
        )

    def _endpoint(self, provider: str) -> Endpoint | None:
        if provider in self.providers:
            return self.providers[provider].endpoint(provider)
        if provider == DEFAULT_PROVIDER:
            return None
        raise KeyError(f"no provider named {provider!r}")

    def targets(self, member: Member) -> tuple[Target, ...]:
        """Where `member`'s calls go, in order: its own model, then each fallback."""
        provider = member.provider or DEFAULT_PROVIDER
        primary = Target(endpoint=self._endpoint(provider), model=member.model or "")
        fallbacks = (
            Target(endpoint=self._endpoint(fallback.provider or provider), model=fallback.model)
            for fallback in member.fallbacks
        )
        return (primary, *fallbacks)

    def used_providers(self) -> dict[str, Provider]:
        """The providers some member or fallback calls (after `with_defaults`)."""
        used = {
            fallback.provider or member.provider or DEFAULT_PROVIDER
            for member in self.members
            for fallback in member.fallbacks
        }
        used |= {member.provider or DEFAULT_PROVIDER for member in self.members}
        return {name: self.providers[name] for name in sorted(used) if name in self.providers}
