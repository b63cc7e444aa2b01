"""The report of an evaluation: a row per contestant (score with its interval, latency,
tokens, dollars), the ensemble against its best member, as a terminal table, report.json
and report.html (the table and a plot of score against cost).

    report = build_report(outcome, plan, seed=0)
    report = with_judgements(report, "sum", judging, seed=0)    # when a judge was asked
    print(table(report))
    html_page(report)                                           # report.html
"""

from __future__ import annotations

import html
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .judge import Judging, win_rates
from .results import Result
from .runner import Outcome, Plan
from .scoring import interval


@dataclass(frozen=True, slots=True)
class Row:
    contestant: str
    questions: int
    correct: int
    score: float
    low: float
    high: float
    errors: int
    mean_latency_s: float
    mean_first_token_s: float | None
    tokens: int
    cost_usd: float | None
    cost_per_correct_usd: float | None


@dataclass(frozen=True, slots=True)
class Gain:
    """An ensemble's score minus its best member's, over the questions both answered, with
    a paired bootstrap interval: above 0 at both ends, the ensemble is better."""

    ensemble: str
    best_member: str
    difference: float
    low: float
    high: float
    extra_cost_usd: float | None


def _row(name: str, results: list[Result], seed: int) -> Row:
    outcomes = [1.0 if r.correct else 0.0 for r in results]
    correct = sum(1 for r in results if r.correct)
    low, high = interval(outcomes, seed=seed)
    firsts = [r.first_token_s for r in results if r.first_token_s is not None]
    costs = [r.cost_usd for r in results]
    cost = None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)
    return Row(
        contestant=name,
        questions=len(results),
        correct=correct,
        score=round(correct / len(results), 4) if results else 0.0,
        low=round(low, 4),
        high=round(high, 4),
        errors=sum(1 for r in results if r.error),
        mean_latency_s=round(statistics.fmean(r.latency_s for r in results), 3) if results else 0.0,
        mean_first_token_s=round(statistics.fmean(firsts), 3) if firsts else None,
        tokens=sum(r.prompt_tokens + r.completion_tokens for r in results),
        cost_usd=None if cost is None else round(cost, 6),
        cost_per_correct_usd=None if cost is None or not correct else round(cost / correct, 6),
    )


def build_report(outcome: Outcome, plan: Plan, seed: int = 0) -> dict[str, Any]:
    by_name: dict[str, list[Result]] = {c.name: [] for c in plan.contestants}
    for result in outcome.results:
        if result.contestant in by_name:
            by_name[result.contestant].append(result)
    order = {item.key: index for index, item in enumerate(plan.items)}
    for results in by_name.values():
        results.sort(key=lambda r: order.get(r.item, 0))
    rows = [_row(name, results, seed) for name, results in by_name.items()]
    gains = []
    for contestant in plan.contestants:
        if contestant.agent is not None:
            continue
        members = [r for r in rows if r.contestant.startswith(f"{contestant.name}/")]
        if not members:
            continue
        best = max(members, key=lambda r: (r.score, -(r.cost_usd or 0.0)))
        gains.append(_gain(contestant.name, best, by_name, rows, seed))
    return {
        "scorer": plan.scorer,
        "questions": len(plan.items),
        "rows": [asdict(row) for row in rows],
        "gains": [asdict(gain) for gain in gains],
        "stopped_by_budget": outcome.stopped_by_budget,
        "spent_usd": round(outcome.spent_usd, 6),
    }


def with_judgements(
    report: dict[str, Any], member: str, judging: Judging, seed: int
) -> dict[str, Any]:
    """The report with the judge's win rates (the ensemble against each member); what the
    judge cost is in what was spent, and a budget that stopped the judging stopped it."""
    rates = [asdict(rate) for rate in win_rates(judging.verdicts, seed=seed)]
    return {
        **report,
        "judge": {
            "member": member,
            "win_rates": rates,
            "stopped_by_budget": judging.stopped_by_budget,
        },
        "stopped_by_budget": report["stopped_by_budget"] or judging.stopped_by_budget,
        "spent_usd": round(report["spent_usd"] + judging.spent_usd, 6),
    }


def _gain(
    ensemble: str, best: Row, by_name: dict[str, list[Result]], rows: list[Row], seed: int
) -> Gain:
    ours = {r.item: r for r in by_name[ensemble]}
    theirs = {r.item: r for r in by_name[best.contestant]}
    both = [key for key in ours if key in theirs]
    differences = [float(ours[k].correct) - float(theirs[k].correct) for k in both]
    low, high = interval(differences, seed=seed)
    row = next(r for r in rows if r.contestant == ensemble)
    extra = (
        None
        if row.cost_usd is None or best.cost_usd is None
        else round(row.cost_usd - best.cost_usd, 6)
    )
    return Gain(
        ensemble=ensemble,
        best_member=best.contestant,
        difference=round(statistics.fmean(differences), 4) if differences else 0.0,
        low=round(low, 4),
        high=round(high, 4),
        extra_cost_usd=extra,
    )


def _money(value: float | None) -> str:
    if value is None:
        return "?"
    return f"${value:.4f}" if value >= 0.01 or value == 0 else f"${value:.6f}"


def table(report: dict[str, Any]) -> str:
    head = (
        f"{'contestant':<28} {'score':>6} {'95% interval':>15} {'latency':>8} "
        f"{'1st token':>9} {'tokens':>8} {'cost':>10} {'per right':>10}"
    )
    lines = [f"{report['questions']} questions, scored {report['scorer']}", head]
    for row in report["rows"]:
        first = "-" if row["mean_first_token_s"] is None else f"{row['mean_first_token_s']:.2f}s"
        lines.append(
            f"{row['contestant']:<28} {row['score']:>6.2f} "
            f"{'[' + format(row['low'], '.2f') + ', ' + format(row['high'], '.2f') + ']':>15} "
            f"{row['mean_latency_s']:>7.2f}s {first:>9} {row['tokens']:>8} "
            f"{_money(row['cost_usd']):>10} {_money(row['cost_per_correct_usd']):>10}"
        )
    for gain in report["gains"]:
        verdict = (
            "better"
            if gain["low"] > 0
            else "worse"
            if gain["high"] < 0
            else "not distinguishable on these questions"
        )
        lines.append(
            f"{gain['ensemble']} vs its best member {gain['best_member']}: "
            f"{gain['difference']:+.2f} [{gain['low']:+.2f}, {gain['high']:+.2f}] ({verdict}), "
            f"{_money(gain['extra_cost_usd'])} more"
        )
    for rate in report.get("judge", {}).get("win_rates", []):
        lines.append(
            f"judged by {report['judge']['member']}: {rate['ensemble']} against {rate['member']} "
            f"wins {rate['rate']:.2f} [{rate['low']:.2f}, {rate['high']:.2f}] of "
            f"{rate['questions']} ({rate['wins']} won, {rate['losses']} lost, {rate['ties']} "
            f"even, {rate['split']} of those split by the order), {_money(rate['cost_usd'])}"
        )
    if report["stopped_by_budget"]:
        judging = " (while judging)" if report.get("judge", {}).get("stopped_by_budget") else ""
        lines.append(f"stopped by --max-cost{judging} after spending {_money(report['spent_usd'])}")
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    html_path.write_text(html_page(report))
    return [json_path, html_path]


def html_page(report: dict[str, Any]) -> str:
    """report.html: the table and a plot of score against cost, in one page that needs
    nothing else (no script; every name escaped)."""
    rows = report["rows"]
    width, height, pad = 480, 300, 40
    costs = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
    top = max(costs, default=0.0) or 1.0
    points = []
    for row in rows:
        if row["cost_usd"] is None:
            continue
        x = pad + (width - 2 * pad) * row["cost_usd"] / top
        y = height - pad - (height - 2 * pad) * row["score"]
        name = html.escape(row["contestant"])
        points.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5"><title>{name}</title></circle>'
            f'<text x="{x + 8:.1f}" y="{y + 4:.1f}">{name}</text>'
        )
    plot = (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="Score against cost">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        f'stroke="currentColor"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" '
        f'stroke="currentColor"/>'
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">cost (USD, up to '
        f"{top:.4f})</text>"
        f'<text x="12" y="{height / 2}" transform="rotate(-90 12 {height / 2})" '
        f'text-anchor="middle">score</text>{"".join(points)}</svg>'
    )
    body = html.escape(table(report))
    return (
        "<!doctype html><meta charset='utf-8'><title>Evaluation</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem}pre{overflow:auto}</style>"
        f"<h1>Evaluation</h1><pre>{body}</pre>{plot}"
    )
