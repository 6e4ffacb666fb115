"""`make chaos`: the long fault, burst, flood and bad-input runs, the emulator in fidelity mode, printing the
figures (see README)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.chaos import scenarios
from tests.chaos.harness import Figures

COLUMNS = [
    ("submitted", "submitted"),
    ("completed", "completed"),
    ("failed_clearly", "failed (clear error)"),
    ("rejected", "rejected (503)"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("workers_killed", "workers killed"),
    ("bad_inputs", "bad inputs"),
    ("counters_waiting", "waiting at end"),
    ("counters_queued", "queued at end"),
    ("leases_held", "leases at end"),
    ("seconds", "s"),
]


def run(scale: float) -> list[Figures]:
    results: list[Figures] = []
    with scenarios.ChaosStack(Path(tempfile.mkdtemp(prefix="surge-chaos-"))).running() as chaos:
        results.append(scenarios.kill_workers(chaos, jobs=int(500 * scale), kills=int(12 * scale), every_s=1.5))
        results.append(scenarios.aws_outage(chaos, jobs=int(200 * scale), outage_s=4.0))
        results.append(scenarios.duplicate_delivery(chaos, jobs=int(40 * scale)))
        for workers in (2, 4):
            results.append(scenarios.concurrency_burst(chaos, jobs=int(200 * scale), workers=workers))
        results.append(scenarios.dropped_clients(chaos))
        results.append(scenarios.bad_inputs(chaos))
    results.append(scenarios.burst_admission(joins=1000, max_size=50))
    results.append(scenarios.join_flood(rate_per_s=500 * scale, duration_s=10))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the number of jobs per scenario")
    args = parser.parse_args()
    console = Console(width=220)
    results = run(args.scale)
    table = Table(title="Surge chaos run")
    table.add_column("scenario")
    for _, title in COLUMNS:
        table.add_column(title, justify="right")
    for figures in results:
        values = asdict(figures)
        table.add_row(figures.scenario, *(str(values[key]) for key, _ in COLUMNS))
    total = Figures("total")
    for key, _ in COLUMNS:
        setattr(total, key, round(sum(asdict(f)[key] for f in results), 1))
    table.add_row("total", *(str(asdict(total)[key]) for key, _ in COLUMNS), style="bold")
    console.print(table)
    problems = [f"{f.scenario}: {p}" for f in results for p in f.problems()]
    for problem in problems:
        console.print(f"[red]problem[/red] {problem}")
    console.print("all invariants held" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
