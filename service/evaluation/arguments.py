"""The `eval` command's arguments, apart from what runs it: every command's parser is built
for any command, and this keeps the others from loading the run machinery."""

from __future__ import annotations

import argparse
from pathlib import Path

SCORERS = ("exact", "includes", "regex", "numeric")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "eval", help="does the ensemble beat its best member? (score, cost, latency)"
    )
    parser.add_argument("dataset", type=Path, help="JSONL (question/answer or input/ideal) or CSV")
    parser.add_argument(
        "--ensemble", help="ensembles to evaluate, comma-separated (default: the default one)"
    )
    parser.add_argument("--scorer", choices=SCORERS, default="includes")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="numeric: relative")
    parser.add_argument("--out", type=Path, default=Path("eval-out"), help="the output folder")
    parser.add_argument("--concurrency", type=int, default=4, help="questions asked at once")
    parser.add_argument("--max-cost", type=float, help="US dollars not to spend beyond")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--seed", type=int, default=0, help="of the bootstrap intervals")
    parser.add_argument(
        "--judge",
        metavar="MEMBER",
        help="a member (agent or summarizer) that compares the ensemble's answer with each "
        "member's, in both orders: a win rate beside the scores",
    )
