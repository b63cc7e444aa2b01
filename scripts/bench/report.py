"""Tables on stdout and PNG plots for the benchmark results."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def print_tables(results: dict[str, Any]) -> None:
    print(f"\n{results['machine']}, {results['when']}")
    for name, data in results.items():
        if isinstance(data, dict) and "failed" in data:
            print(f"\n{name}: FAILED: {data['failed']}")
    results = {k: v for k, v in results.items() if not (isinstance(v, dict) and "failed" in v)}
    if "overhead" in results:
        data = results["overhead"]
        print("\n1. Overhead: the service's percentile minus the floor's (the same calls made")
        print("   straight to the fake at the same concurrency), in ms")
        print(
            f"{'clients':>8} {'reqs':>6} {'err':>4} | {'total p50':>9} {'p90':>7} {'p99':>7} "
            f"| {'first p50':>9} {'p90':>7} {'p99':>7} | {'gen busy':>8}"
        )
        for row in data["rows"]:
            t, f = row["overhead_total_ms"], row["overhead_first_token_ms"]
            print(
                f"{row['clients']:>8} {row['requests']:>6} {row['errors']:>4} | "
                f"{t['p50']:>9} {t['p90']:>7} {t['p99']:>7} | "
                f"{f['p50']:>9} {f['p90']:>7} {f['p99']:>7} | {row['generator_busy']:>8}"
            )
    if "saturation" in results:
        print("\n2. Saturation (zero upstream latency, 32 clients)")
        print(
            f"{'workers':>8} {'pipelines/s':>12} {'cpu ms/pipeline':>16} {'errors':>7} "
            f"{'fake busy':>10} {'gen busy':>9}"
        )
        for row in results["saturation"]["rows"]:
            print(
                f"{row['workers']:>8} {row['pipelines_per_s']:>12} "
                f"{row['service_cpu_ms_per_pipeline']:>16} {row['errors']:>7} "
                f"{row['fake_cpu_busy']:>10} {row['generator_busy']:>9}"
            )
    if "streams" in results:
        print("\n3. Open streams (agents stalled)")
        print(f"{'streams':>8} {'open':>6} {'errors':>7} {'rss MiB':>8} {'KiB/stream':>11}")
        for row in results["streams"]["rows"]:
            print(
                f"{row['streams']:>8} {row['open']:>6} {row['errors']:>7} "
                f"{row['rss_open_mib']:>8} {row['kib_per_stream']:>11}  "
                + ", ".join(f"{kind} x{n}" for kind, n in row.get("error_kinds", {}).items())
            )
    if "storm" in results:
        print("\n4. Disconnect storms: clients hang up at once; client close -> upstream close")
        print(f"{'clients':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'open 1 s later':>15}")
        for run in results["storm"]["runs"]:
            delay = run["close_to_upstream_close_ms"]
            print(
                f"{run['clients']:>8} {delay['p50']:>8} {delay['p99']:>8} {delay['max']:>8} "
                f"{run['upstream_calls_open_after_1s']:>15}"
            )
    for key, title in (
        ("storage", "6. Storage: none, SQLite, PostgreSQL"),
        ("auth", "7. Auth: API keys (warm cache) against AUTH=none, SQLite store"),
        ("limits", "8. Limits: off, in the process, in Redis"),
        ("openai", "9. The same load on /api/process and /v1/chat/completions"),
    ):
        if key in results:
            _print_variants(title, results[key]["rows"])
    if "phases" in results:
        print("\n10. CPU per pipeline by phase (py-spy at saturation, 32 clients), in ms")
        runs = results["phases"]["runs"]
        names = list(runs[0]["phases"])
        print(f"{'run':<38} {'total':>6} " + " ".join(f"{n[:9]:>9}" for n in names))
        for run in runs:
            print(
                f"{run['heading']:<38} {run['cpu_ms_per_pipeline']:>6} "
                + " ".join(f"{run['phases'][n]:>9}" for n in names)
            )
    if "agent_streaming" in results:
        data = results["agent_streaming"]
        clients = data["clients"]
        print(f"\n11. Agents streaming (2 agents x 200 tokens 10 ms apart, {clients} clients)")
        print(f"{'agent streaming':<16} {'req/s':>7} {'cpu ms/req':>11} {'frames/agent/s':>15}")
        for row in data["rows"]:
            print(
                f"{row['variant']:<16} {row['pipelines_per_s']:>7} "
                f"{row['service_cpu_ms_per_pipeline']:>11} "
                f"{row['delta_frames_per_agent_per_s']:>15}"
            )
        print(
            f"on vs off: throughput {data['throughput_on_vs_off']} (budget >= 0.85), "
            f"CPU {data['cpu_on_minus_off_ms']:+} ms (budget <= +1.5), frames per agent per "
            f"second {data['rows'][1]['delta_frames_per_agent_per_s']} (budget <= 25)"
        )
        if "upstream_read" in data:
            print(
                f"of the CPU: {data['cpu_reading_two_streams_ms']} ms is reading the two "
                f"answers token by token (the SDK alone, no service), "
                f"{data['cpu_on_minus_off_beyond_reading_ms']:+} ms the service's own"
            )
        if "memory" in data:
            memory = data["memory"]
            print(
                f"memory per open stream ({memory['on']['streams']} open, agents stalled): "
                f"off {memory['off']['kib_per_stream']} KiB, on "
                f"{memory['on']['kib_per_stream']} KiB, "
                f"{data['memory_on_minus_off_kib']:+} KiB (budget <= +8)"
            )
    if "strategies" in results:
        _print_strategies(results["strategies"])
    if "peer" in results:
        peer = results["peer"]
        if "skipped" in peer:
            print(f"\n5. Peer: {peer['skipped']}")
        else:
            print("\n5. Peer (zero upstream latency, 32 clients)")
            print(f"{'system':<26} {'calls/req':>9} {'req/s':>8} {'cpu ms/req':>11} {'errors':>7}")
            for row in peer["rows"]:
                print(
                    f"{row['system']:<26} {row['upstream_calls_per_request']:>9} "
                    f"{row['requests_per_s']:>8} {row['cpu_ms_per_request']:>11} "
                    f"{row['errors']:>7}"
                )


def plot(results: dict[str, Any], out: Path) -> list[Path]:
    results = {k: v for k, v in results.items() if not (isinstance(v, dict) and "failed" in v)}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if "overhead" in results:
        rows = results["overhead"]["rows"]
        clients = [row["clients"] for row in rows]
        figure, axis = plt.subplots(figsize=(6, 4))
        for key, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
            axis.plot(
                clients, [r["overhead_total_ms"][key] for r in rows], style, label=f"total {key}"
            )
        axis.plot(
            clients,
            [r["overhead_first_token_ms"]["p50"] for r in rows],
            "x-",
            label="first token p50",
        )
        axis.set_xscale("log")
        axis.set_yscale("symlog", linthresh=10)
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel("ms above the upstream's critical path")
        axis.set_title("Overhead of the service")
        axis.grid(True, alpha=0.3)
        axis.legend()
        written.append(_save(figure, out / "overhead.png"))
    if "streams" in results:
        rows = results["streams"]["rows"]
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot([r["streams"] for r in rows], [r["kib_per_stream"] for r in rows], "o-")
        axis.axhline(80, color="red", linestyle="--", label="target: 80 KiB")
        axis.set_xlabel("open streams")
        axis.set_ylabel("resident memory per stream (KiB)")
        axis.set_title("Memory per open stream")
        axis.grid(True, alpha=0.3)
        axis.legend()
        written.append(_save(figure, out / "open-streams.png"))
    if "saturation" in results:
        rows = results["saturation"]["rows"]
        figure, axis = plt.subplots(figsize=(5, 4))
        axis.bar([str(r["workers"]) for r in rows], [r["pipelines_per_s"] for r in rows])
        axis.set_xlabel("workers")
        axis.set_ylabel("pipelines per second (3 upstream calls each)")
        axis.set_title("Saturation, zero upstream latency")
        written.append(_save(figure, out / "saturation.png"))
    return written


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _print_variants(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title} (overhead at 10 clients; saturation at 32)")
    print(
        f"{'variant':>11} {'p50 ms':>7} {'p99 ms':>7} {'p50 vs 1st':>11} "
        f"{'pipelines/s':>12} {'vs 1st':>7} {'cpu ms/pipeline':>16} {'cpu vs 1st':>11} {'err':>4}"
    )
    for row in rows:
        overhead = row["overhead_total_ms"]
        print(
            f"{row.get('variant', row.get('store', row.get('auth'))):>11} "
            f"{overhead['p50']:>7} {overhead['p99']:>7} "
            f"{row.get('p50_overhead_vs_base_ms', 0):>11} {row['pipelines_per_s']:>12} "
            f"{row.get('throughput_vs_base', 1):>7} {row['service_cpu_ms_per_pipeline']:>16} "
            f"{row.get('cpu_vs_base_ms', 0):>11} {row['errors']:>4}"
            + ("  (the defaults, measured once for 6-9)" if row.get("shared") else "")
        )


def _print_strategies(data: dict[str, Any]) -> None:
    print(
        f"\n12. Deliberation strategies ({data['agents']} agents, short replies, "
        f"{data['clients']} clients for {data['seconds']} s each in {data['passes']} slices "
        f"taken in turn; {data['wall_s']} s in all)"
    )
    print(
        f"{'strategy':<16} {'pipelines/s':>11} {'calls/req':>9} {'configured':>10} "
        f"{'cpu ms/pipeline':>15} {'cpu ms/call':>11} {'vs summarize':>12} {'<= +10%':>8} "
        f"{'err':>4}"
    )
    for row in data["rows"]:
        options = ", ".join(f"{name} {value}" for name, value in row["options"].items())
        label = f"{row['strategy']} ({options})" if options else row["strategy"]
        configured = str(row["configured_calls_per_request"])
        if not row["calls_as_configured"]:
            configured += " MISMATCH"
        print(
            f"{label:<16} {row['pipelines_per_s']:>11} {row['upstream_calls_per_request']:>9} "
            f"{configured:>10} {row['service_cpu_ms_per_pipeline']:>15} "
            f"{row['service_cpu_ms_per_call']:>11} {row['cpu_per_call_vs_summarize']:>12} "
            f"{'met' if row['target_met'] else 'not met':>8} {row['errors']:>4}"
        )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target beside this run's figure, met or not (None: its scenario did not run)."""

    def row(
        what: str, bound: float, unit: str, figure: float | None, at_most: bool = True
    ) -> dict[str, Any]:
        met = None if figure is None else (figure <= bound if at_most else figure >= bound)
        sign = "<=" if at_most else ">="
        return {"target": what, "bound": f"{sign} {bound:g}{unit}", "figure": figure, "met": met}

    overhead = {r["clients"]: r for r in _ok(results, "overhead", "rows")}
    ten = overhead.get(10)
    peer = {r["system"]: r for r in _ok(results, "peer", "rows")}
    ours, litellm = peer.get("this service, 2 agents"), peer.get("LiteLLM proxy")
    phases = _ok(results, "phases", "runs")
    streams = {r["streams"]: r for r in _ok(results, "streams", "rows")}
    storms = _ok(results, "storm", "runs")
    large = [r["close_to_upstream_close_ms"]["p99"] for r in storms if r["clients"] == 2000]
    runs_500 = [r["close_to_upstream_close_ms"]["p99"] for r in storms if r["clients"] == 500]
    return [
        row(
            "overhead at 10 clients, p50",
            5,
            " ms",
            ten["overhead_total_ms"]["p50"] if ten else None,
        ),
        row(
            "overhead at 10 clients, p99",
            20,
            " ms",
            ten["overhead_total_ms"]["p99"] if ten else None,
        ),
        row(
            "saturation vs LiteLLM (3 calls to its 1)",
            4,
            "x",
            round(ours["requests_per_s"] / litellm["requests_per_s"], 2)
            if ours and litellm
            else None,
            at_most=False,
        ),
        row(
            "CPU per pipeline (scenario 10, /api/process)",
            4.5,
            " ms",
            phases[0]["cpu_ms_per_pipeline"] if phases else None,
        ),
        row(
            "memory per open stream at 2,000",
            80,
            " KiB",
            streams[2000]["kib_per_stream"] if 2000 in streams else None,
        ),
        row(
            "2,000 hang up at once, p99 to upstream close", 250, " ms", large[0] if large else None
        ),
        row(
            f"500 hang up at once, p99, worst of {len(runs_500)} runs",
            100,
            " ms",
            max(runs_500) if runs_500 else None,
        ),
    ]


def _ok(results: dict[str, Any], scenario: str, key: str) -> list[dict[str, Any]]:
    data = results.get(scenario)
    if not isinstance(data, dict) or key not in data:
        return []
    rows: list[dict[str, Any]] = data[key]
    return rows


def print_targets(rows: list[dict[str, Any]]) -> None:
    print("\nTargets")
    print(f"{'target':<48} {'bound':>10} {'this run':>9}  ")
    for row in rows:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[row["met"]]
        figure = "-" if row["figure"] is None else row["figure"]
        print(f"{row['target']:<48} {row['bound']:>10} {figure:>9}  {verdict}")
