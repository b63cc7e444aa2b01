"""`llm-fanout eval DATASET`: every question through each ensemble and each of its agents
alone, scored, with a report in the terminal and in the output folder.

    llm-fanout eval examples/eval/arithmetic.jsonl --scorer numeric --out eval-out
    llm-fanout eval data.csv --ensemble chat,code --max-cost 2.50

It reads the same settings as the server (ENSEMBLE_FILE, the mock or LLM_BASE_URL and the
keys). Run it again with the same --out to finish an evaluation that was interrupted.
"""

from __future__ import annotations

import argparse
import sys

import trio

from ..ensemble import EnsembleError, UnknownEnsemble
from ..resources.opening import build_model, load_configured_ensembles
from ..settings import SettingsError, load_settings
from .book import EvaluationError, FolderBook
from .dataset import DatasetError, load_dataset
from .judge import judge_pairs
from .report import build_report, table, with_judgements, write_report
from .runner import Plan, contestants_of, evaluate, judge_of, progress_bar


def run_eval(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        loaded = load_configured_ensembles(settings)
        items = load_dataset(args.dataset)[: args.limit]
        names = [name.strip() for name in args.ensemble.split(",")] if args.ensemble else []
        contestants = contestants_of(loaded, names)
    except (SettingsError, EnsembleError, UnknownEnsemble, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    judge = None
    if args.judge:
        judge = judge_of(contestants, args.judge)
        if judge is None:
            members = ", ".join(m.name for m in contestants[0].ensemble.members)
            print(f"error: --judge {args.judge}: no such member ({members})", file=sys.stderr)
            return 2
    if args.concurrency < 1:
        print("error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    book = FolderBook(args.out)
    plan = Plan(
        items=items,
        contestants=contestants,
        scorer=args.scorer,
        book=book,
        default_base_url=settings.llm_base_url,
        free=settings.use_llm_mock,
        tolerance=args.tolerance,
        concurrency=args.concurrency,
        max_cost_usd=args.max_cost,
        timeout_s=settings.request_timeout_s,
        on_result=progress_bar,
    )

    async def main() -> int:
        model = build_model(settings)
        try:
            outcome = await evaluate(plan, model)
        finally:
            await model.aclose()
        report = build_report(outcome, plan, seed=args.seed)
        if judge is not None and not outcome.stopped_by_budget:
            model_for_judge = build_model(settings)
            try:
                judging = await judge_pairs(
                    plan, model_for_judge, outcome.results, judge=judge, spent_usd=outcome.spent_usd
                )
            finally:
                await model_for_judge.aclose()
            report = with_judgements(report, judge.name, judging, seed=args.seed)
        print(table(report))
        for path in write_report(report, args.out):
            print(f"wrote {path}")
        return 0

    try:
        return trio.run(main)
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        book.close()
