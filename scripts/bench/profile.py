"""Profile the service under the saturation load with py-spy; the busiest functions go to
docs/benchmarks/profile.txt. Run it before optimising (`pip install py-spy`):

    python -m scripts.bench.profile [--seconds 15]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

import trio

from .load import closed_loop
from .processes import ensemble_file, service_env, started
from .scenarios import INSTANT_UPSTREAM

OUT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "profile.txt"


async def profile(seconds: float) -> str:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory(prefix="profile-") as scratch:
        work = Path(scratch)
        async with started(INSTANT_UPSTREAM, {}, work / "instant.log") as fake:
            ensemble = ensemble_file(work / "zero.toml", 2, "bench-agent-0", "bench-summary-0")
            env = service_env(fake.url, ensemble)
            async with started([sys.executable, "-m", "service"], env, work / "svc.log") as svc:
                await closed_loop(svc.url, 4, requests_each=5)
                raw = work / "profile.txt"
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(lambda: closed_loop(svc.url, 32, duration_s=seconds + 2))
                    await trio.run_process(
                        [
                            py_spy,
                            "record",
                            "--pid",
                            str(svc.process.pid),
                            "--duration",
                            str(int(seconds)),
                            "--format",
                            "raw",
                            "--output",
                            str(raw),
                            "--nonblocking",
                        ],
                        capture_stdout=True,
                        capture_stderr=True,
                    )
                return summarize(raw.read_text())


def summarize(raw: str, top: int = 25) -> str:
    """Self time and total time per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} samples\n", "self %  function"]
    lines += [f"{100 * n / samples:6.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / samples:6.1f}  {name}" for name, n in total.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.profile")
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    text = trio.run(profile, args.seconds)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
