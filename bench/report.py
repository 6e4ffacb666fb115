"""Turns the benchmark's cells into `results.md` (tables, cost per request) and `results.png` (the plot)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import cost
from bench.workloads import WORKLOADS

STREAM_READS = (
    "dynamodb.Query events",
    "dynamodb.GetItem state/counters",
    "dynamodb.GetItem state/cursor",
    "dynamodb.PutItem state/cursor",
)
"""Calls a session stream makes: event-log polls, rank refreshes, its cursor."""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def _per_request(cell: Any) -> dict[str, list[float]]:
    """Calls and capacity units per completed request, by role and operation."""
    n = max(1, cell.completed)
    out: dict[str, list[float]] = {}
    for role, ops in cell.calls.items():
        for op, (count, units) in ops.items():
            key = f"{role}: {op}"
            out[key] = [count / n, units / n]
    return out


def _summary(cell: Any) -> dict[str, float]:
    """Per request: stream calls, other front calls, worker calls, SQS calls, WRU, RRU."""
    calls = _per_request(cell)
    s = {"stream": 0.0, "join": 0.0, "worker": 0.0, "sqs": 0.0, "wru": 0.0, "rru": 0.0, "total": 0.0}
    for key, (count, units) in calls.items():
        role, op = key.split(": ", 1)
        s["total"] += count
        if role == "worker":
            s["worker"] += count
        elif op in STREAM_READS:
            s["stream"] += count
        else:
            s["join"] += count
        if op.startswith("sqs."):
            s["sqs"] += count
        elif any(w in op for w in ("Put", "Update", "Delete", "Write")):
            s["wru"] += units
        else:
            s["rru"] += units
    return s


def _join_floor_s(cells: Sequence[Any]) -> float:
    """The uncontended join time (Surge at 1 user): what a join Lambda bills; locally a join under
    load also waits behind the one front process, which a Lambda fleet does not."""
    times = [c.join_s for c in cells if c.target == "surge" and c.users == 1 and c.join_s]
    return min(times) if times else 0.05


def _cost(cell: Any, join_s: float) -> cost.RequestCost:
    s = _summary(cell)
    return cost.per_million(min(cell.join_s or join_s, join_s), cell.stream_s or 0.0, s["sqs"], s["wru"], s["rru"])


def table(cells: Sequence[Any]) -> list[str]:
    lines = [
        "| workload | K | users | target | req/s | % of devices | p50 ms | p99 ms | run p50 ms | batch | device busy "
        "| rejected | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(cells, key=lambda c: (list(WORKLOADS).index(c.workload), c.devices, c.users, c.target)):
        workload = WORKLOADS[c.workload]
        capacity = workload.capacity_per_s(c.devices) if workload.fixed_s else None
        share = f"{c.throughput / capacity:.0%}" if capacity else "-"
        busy = f"{c.device_busy:.0%}" if workload.fixed_s else "-"
        errors = f"{c.errors} ({', '.join(f'{k}: {v}' for k, v in c.error_kinds.items())})" if c.errors else "0"
        lines.append(
            f"| {c.workload} | {c.devices} | {c.users} | {c.target} | {c.throughput:,.1f} | {share} | {_ms(c.p50_s)} "
            f"| {_ms(c.p99_s)} | {_ms(c.run_p50_s)} | {c.batch_mean or 0:.1f} | {busy} | {c.rejections} | {errors} |"
        )
    return lines


def cost_table(cells: Sequence[Any]) -> list[str]:
    join_s = _join_floor_s(cells)
    lines = [
        "| workload | K | users | req/s | p50 ms | AWS calls/request: join · stream · worker | DynamoDB WRU · RRU "
        "| SQS calls | stream open s | join s | $ per million requests |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        if c.target != "surge" or c.completed < 10:
            continue
        s = _summary(c)
        lines.append(
            f"| {c.workload} | {c.devices} | {c.users} | {c.throughput:,.1f} | {_ms(c.p50_s)} "
            f"| {s['join']:.1f} · {s['stream']:.1f} · {s['worker']:.1f} | {s['wru']:.1f} · {s['rru']:.1f} "
            f"| {s['sqs']:.1f} | {c.stream_s or 0:.2f} | {c.join_s or 0:.3f} | {_cost(c, join_s).total:,.2f} |"
        )
    return lines


def cost_breakdown(cell: Any, join_s: float) -> list[str]:
    parts = _cost(cell, join_s)
    lines = [
        f"Cost of a million requests like `{cell.workload}` K={cell.devices} at {cell.users} users:",
        "",
        "| item | $ per million requests |",
        "|---|---|",
    ]
    lines += [f"| {name.replace('_', ' ')} | {value:,.2f} |" for name, value in vars(parts).items()]
    lines.append(f"| **total** | **{parts.total:,.2f}** |")
    return lines


def calls_by_operation(cells: Sequence[Any], workload: str) -> list[str]:
    """Calls per request by operation across the user counts of one workload (does it grow with depth?)."""
    chosen = sorted(
        (c for c in cells if c.target == "surge" and c.workload == workload and c.devices == 1 and c.completed >= 10),
        key=lambda c: c.users,
    )
    if not chosen:
        return []
    per = [_per_request(c) for c in chosen]
    keys = sorted({k for p in per for k in p})
    header = "| role: operation | " + " | ".join(f"{c.users} users" for c in chosen) + " |"
    lines = [
        f"### AWS calls per request by operation (`{workload}`, K = 1)",
        "",
        header,
        "|---|" + "---|" * len(chosen),
    ]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{p.get(key, [0, 0])[0]:.2f}" for p in per) + " |")
    totals = [sum(v[0] for v in p.values()) for p in per]
    lines.append("| **all calls** | " + " | ".join(f"**{t:.1f}**" for t in totals) + " |")
    depth = [c.throughput * (c.p50_s or 0) for c in chosen]
    lines.append("| (jobs in the system, req/s x p50) | " + " | ".join(f"{d:.0f}" for d in depth) + " |")
    return [*lines, ""]


def cpu_table(cells: Sequence[Any]) -> list[str]:
    lines = ["| workload | K | users | target | CPU ms per request, by process |", "|---|---|---|---|---|"]
    for c in cells:
        if not c.completed:
            continue
        parts = ", ".join(f"{role} {1000 * s / c.completed:.1f}" for role, s in sorted(c.cpu_s.items()))
        lines.append(f"| {c.workload} | {c.devices} | {c.users} | {c.target} | {parts} |")
    return lines


def plot(path: Path, cells: Sequence[Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in WORKLOADS if any(c.workload == w for c in cells)]
    fig, axes = plt.subplots(2, len(workloads), figsize=(4.2 * len(workloads), 7.5), squeeze=False)
    styles = {"gradio": "tab:orange", "surge": "tab:blue"}
    for col, workload in enumerate(workloads):
        top, bottom = axes[0][col], axes[1][col]
        for target in ("gradio", "surge"):
            for devices, dash in ((1, "-"), (2, "--"), (4, ":")):
                series = sorted(
                    (c for c in cells if c.workload == workload and c.target == target and c.devices == devices),
                    key=lambda c: c.users,
                )
                if not series:
                    continue
                users = [c.users for c in series]
                label = f"{target} K={devices}"
                top.plot(users, [c.throughput for c in series], dash, marker="o", color=styles[target], label=label)
                bottom.plot(
                    users,
                    [(c.p50_s or float("nan")) * 1000 for c in series],
                    dash,
                    marker="o",
                    color=styles[target],
                    label=f"{label} p50",
                )
                bottom.plot(
                    users,
                    [(c.p99_s or float("nan")) * 1000 for c in series],
                    dash,
                    marker="x",
                    color=styles[target],
                    alpha=0.45,
                    label=f"{label} p99",
                )
        capacity = WORKLOADS[workload].capacity_per_s(1) if WORKLOADS[workload].fixed_s else None
        if capacity:
            top.axhline(capacity, color="grey", lw=0.8, ls="-.", label="1 device's capacity")
        top.set_title(workload)
        top.set_xscale("log")
        bottom.set_xscale("log")
        bottom.set_yscale("log")
        top.set_ylabel("completed req/s")
        bottom.set_ylabel("latency join → completed (ms)")
        bottom.set_xlabel("concurrent users")
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3, which="both")
        top.legend(fontsize=7)
    axes[1][-1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reading(cells: Sequence[Any]) -> str:
    """A paragraph of the headline comparisons, from the figures themselves."""

    def find(target: str, workload: str, devices: int, users: int) -> Any:
        return next(
            (c for c in cells if (c.target, c.workload, c.devices, c.users) == (target, workload, devices, users)), None
        )

    parts = []
    for workload, users in (
        ("echo", 1),
        ("echo", 256),
        ("echo", 1000),
        ("sim_gpu", 64),
        ("sim_gpu", 256),
        ("sim_gpu", 1000),
        ("slow_model", 256),
    ):
        g, s = find("gradio", workload, 1, users), find("surge", workload, 1, users)
        if g and s:
            parts.append(
                f"`{workload}` at {users} users: Gradio {g.throughput:.0f} req/s (p50 {_ms(g.p50_s)} ms, "
                f"{g.errors} errors), Surge {s.throughput:.0f} req/s (p50 {_ms(s.p50_s)} ms, {s.errors} errors)"
            )
    for workload in ("sim_gpu", "slow_model", "sim_gpu_unbatched"):
        for target in ("surge", "gradio"):
            series = [find(target, workload, k, 256) for k in (1, 2, 4)]
            if all(series):
                parts.append(
                    f"{target} `{workload}` at 256 users with K = 1, 2, 4: "
                    + " → ".join(f"{c.throughput:.0f}" for c in series)
                    + " req/s"
                )
    return "; ".join(parts) + "."


def write(out: Path, meta: dict[str, Any], cells: Sequence[Any]) -> None:
    plot(out / "results.png", cells)
    load = " / ".join(f"{x:.2f}" for x in meta["load_before"])
    load_after = " / ".join(f"{x:.2f}" for x in meta["load_after"])
    biggest = [c for c in cells if c.target == "surge" and c.workload == "sim_gpu" and c.completed]
    lines = [
        "# Viral-load benchmark: Surge and Gradio side by side",
        "",
        f"Measured {meta['when']} on {meta['machine']}; load average before {load}, after {load_after} "
        f"(the machine is shared). Whole run {meta['run_s']:.0f} s. Each cell: {meta['warmup_s']:g} s warm-up, "
        f"{meta['duration_s']:g} s measured, then requests in flight get up to {meta['drain_s']:g} s to finish. "
        f'A user refused with "queue full" waits {meta["reject_backoff_s"]:g} s (±50 %) and retries. Client, '
        "servers and emulator all share the same cores: absolute figures are this machine's, the comparison is "
        "the point.",
        "",
        "![throughput and latency against users](results.png)",
        "",
        "## Throughput and latency",
        "",
        "K = simulated devices: Surge worker processes, or Gradio's `concurrency_limit` in one process. "
        "% of devices = completed req/s over what K devices allow with full batches. "
        "Latency is join → `process_completed`; run = `process_starts` → completed. Device busy = share "
        "of the window the K devices spent in the model.",
        "",
        *table(cells),
        "",
        "## Reading",
        "",
        reading(cells),
        "",
        "## Cost per request (Surge)",
        "",
        "AWS calls counted by botocore hooks in the front and worker processes during each window, divided by "
        "the requests completed in it; stream open seconds and join seconds measured by the client. Priced with "
        "AWS list prices (us-east-1): API Gateway REST $3.50/M, Lambda $0.20/M + arm64 $0.0000133334/GB-s "
        "(ApiFunction 512 MB, StreamFunction 256 MB), SQS $0.40/M, DynamoDB on-demand $0.625/M WRU, "
        "$0.125/M RRU. Not included: the GPU instances (per hour), data transfer, logs. "
        f"The join Lambda is billed at the uncontended join time ({_join_floor_s(cells) * 1000:.0f} ms, Surge at "
        "1 user): under load a local join also queues behind the one front process, which a Lambda fleet does "
        "not. The stream Lambda is billed for the seconds the stream was open (the wait the user had), "
        f"${cost.STREAM_LAMBDA_GB * cost.LAMBDA_ARM_PER_GB_S * 1e6:.2f} per million requests per second of wait.",
        "",
        *cost_table(cells),
        "",
        *(cost_breakdown(max(biggest, key=lambda c: c.users), _join_floor_s(cells)) if biggest else []),
        "",
        *calls_by_operation(cells, "slow_model"),
        *calls_by_operation(cells, "sim_gpu"),
        "## CPU time per request",
        "",
        *cpu_table(cells),
        "",
    ]
    (out / "results.md").write_text("\n".join(lines))


if __name__ == "__main__":
    import json
    import sys
    from types import SimpleNamespace

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
    saved = json.loads((folder / "results.json").read_text())
    write(folder, saved["meta"], [SimpleNamespace(**c) for c in saved["cells"]])
