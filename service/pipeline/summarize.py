"""The summary phase of a run: the summarizer combines the answers gathered, streamed.

    terminal = await summarize(run, events, gathered, started)   # Done or Failed

Announces the summary (`SummaryStarted`: who answered, who is missing), renders the
summarizer's prompt, streams its text as `SummaryDelta`s under the summarizer's own timeout
and span, and ends with the run's `Done` (usage, timings, the model each member used), or a
`Failed` from the summarizer. Retries, fallbacks and a restart are `summary.py`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import trio

from ..ensemble.prices import run_cost
from ..ensemble.templates import AnswerView, RankView, TemplateFailed
from ..errors import ServiceError, UpstreamError, UpstreamTimeout
from ..events import (
    Done,
    Event,
    Failed,
    PublicError,
    SummaryDelta,
    SummaryStarted,
    Timings,
)
from ..llm import Usage
from ..telemetry.tracing import end_span, member_span, record_answer
from .calls import Attempts
from .context import RunContext
from .gather import Gathered
from .prompt import summary_messages
from .summary import stream_summary
from .timing import ms_since
from .waste import WasteTally

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Briefing:
    """What a strategy gives its summarizer beside the answers: a council's reviews and
    ranking, the prompt its role uses by default, and the tokens every step before spent."""

    reviews: Sequence[AnswerView] = ()
    ranking: Sequence[RankView] = ()
    default_prompt: str | None = None
    usage: Mapping[str, Usage] | None = None
    # The calls every step before paid for and did not use: the summary's are added to it
    # as the summary ends, however it ends (a run cancelled now counts them too).
    wasted: WasteTally | None = None


async def summarize(
    run: RunContext,
    events: trio.MemorySendChannel[Event],
    gathered: Gathered,
    started: float,
    briefing: Briefing = Briefing(),
) -> Done | Failed:
    """The run's terminal event once the summary ended; `started` is when the run began."""
    ensemble = run.ensemble
    summarizer = run.summarizer
    answers = gathered.answers()
    missing = gathered.missing()
    counts = gathered.counts()
    usage = gathered.usage if briefing.usage is None else briefing.usage
    await events.send(
        SummaryStarted(
            summarizer=summarizer.name,
            agents=tuple(name for name, _ in answers),
            missing=tuple(missing),
            ensemble_version=run.ensemble_version,
        )
    )
    texts = [(name, answer.text) for name, answer in answers]
    wasted = briefing.wasted if briefing.wasted is not None else WasteTally()
    try:
        messages = summary_messages(
            summarizer,
            run.request.message,
            texts,
            missing,
            max_answer_chars=ensemble.max_answer_chars,
            history=run.history,
            client_context=run.client_context,
            reviews=briefing.reviews,
            ranking=briefing.ranking,
            default_prompt=briefing.default_prompt,
        )
    except TemplateFailed as exc:
        log.error("%s", exc, exc_info=exc, extra=run.log_context(summarizer.name))
        return Failed(
            source=summarizer.name,
            error=PublicError.of(ServiceError()),
            usage=usage,
            agents=counts,
            wasted=wasted.priced(ensemble, free=run.free),
        )
    first_token_ms: float | None = None

    attempts = Attempts()
    failure: ServiceError | None = None
    with member_span(
        "summarizer", summarizer.name, summarizer.model or "", run.ensemble_version
    ) as span:

        async def send_text(text: str) -> None:
            nonlocal first_token_ms
            if first_token_ms is None:
                first_token_ms = ms_since(started)
                span.add_event("gen_ai.first_token", {"fanout.first_token_ms": first_token_ms})
            await events.send(SummaryDelta(summarizer=summarizer.name, text=text))

        try:
            with trio.fail_after(summarizer.timeout_s or float("inf")):
                result = await stream_summary(
                    run, messages, attempts, send_text=send_text, events=events
                )
        except trio.TooSlowError:
            failure = UpstreamTimeout(f"{summarizer.name} did not finish within its timeout")
        except UpstreamError as exc:
            failure = exc
        finally:
            span.set_attribute("fanout.retries", attempts.retries)
            wasted.add(summarizer.name, attempts)
        if failure is not None:
            end_span(span, "failed", failure.code)
        else:
            record_answer(span, result.model, result.usage)
    if failure is not None:
        log.warning(
            "summarizer %s failed after %d attempt(s): %s",
            summarizer.name,
            attempts.count,
            failure.code,
            exc_info=failure if failure.__cause__ else None,
            extra=run.log_context(summarizer.name),
        )
        return Failed(
            source=summarizer.name,
            error=PublicError.of(failure),
            usage=usage,
            agents=counts,
            wasted=wasted.priced(ensemble, free=run.free),
        )
    if result.usage is not None:
        usage = {**usage, summarizer.name: result.usage}
    models = {name: answer.model for name, answer in answers}
    models[summarizer.name] = result.model
    timings = Timings(
        agents_ms=gathered.elapsed_ms(), first_token_ms=first_token_ms, total_ms=ms_since(started)
    )
    return Done(
        summarizer=summarizer.name,
        usage=usage,
        timings=timings,
        agents=counts,
        models=models,
        ensemble_version=run.ensemble_version,
        finish_reason=result.finish_reason,
        cost=run_cost(ensemble, usage, models, free=run.free),
        wasted=wasted.priced(ensemble, free=run.free),
    )
