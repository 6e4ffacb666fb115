"""Turns the benchmark's cells into `results.md` (tables, cost per request) and `results.png` (the plot)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import cost
from bench.workloads import WORKLOADS
from surge.session import SLOW_TICK_S

STREAM_READS = (
    "dynamodb.Query events",
    "dynamodb.BatchGetItem state/counters",
    "dynamodb.BatchWriteItem events (delete)",
)
"""Calls of the front that a session stream makes: reads of its session's log, the counters read once
per tick per process (every shard in one BatchGetItem), and the deletion of delivered jobs."""

WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")

OPERATION_CELLS = (("sim_gpu", 16), ("sim_gpu", 64), ("sim_gpu", 256), ("echo", 1))
"""The Surge cells (K = 1) the per-operation table and its costs show."""


def _is_write(op: str) -> bool:
    """`dynamodb.BatchWriteItem events (put)` → True."""
    return op.startswith("dynamodb.") and op.split(".", 1)[1].split()[0] in WRITES


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
        elif _is_write(op):
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


def mode_table(cells: Sequence[Any]) -> list[str]:
    """Front and queue per million predictions by stream mode and wait, from sim_gpu at 64 users' counts."""
    cell = _find(cells, "surge", "sim_gpu", 1, 64)
    if cell is None or not cell.completed:
        return []
    s = _summary(cell)
    join_s = _join_floor_s(cells)
    rows = [
        "### Cost by stream mode and wait",
        "",
        "Per million predictions, front and queue (API Gateway, Lambda, the stream's compute, DynamoDB, SQS), "
        f"from the calls and units counted at sim_gpu, 64 users ({s['wru']:.2f} WRU, {s['rru']:.2f} RRU, "
        f"{s['sqs']:.2f} SQS calls per request), for a stream that waits W and then about "
        f"{cost.STREAM_TAIL_S:g} s more. A waiting visitor's stream also reads the counters "
        f"({cost.COUNTERS_READ_RRU:g} RRU a read) every {cost.COUNTERS_TICK_S:g} s near the front and up to "
        f"{SLOW_TICK_S:g} s apart far back: on demand alone in its Lambda environment, so it pays every read "
        f"of its wait ({cost.lone_counters_rru(30):g} RRU over 30 s); on managed instances an environment's "
        "reads are shared by its streams. Managed instances: m7g.large at "
        f"${cost.MANAGED_INSTANCE_PER_H}/h + "
        f"{cost.MANAGED_FEE:.0%}, {cost.ENVIRONMENTS_PER_INSTANCE} environments of 2 GB per instance, "
        f"{cost.STREAMS_PER_ENVIRONMENT} streams per environment, no duration charge; its floor is "
        f"{cost.ALWAYS_ON_ENVIRONMENTS} environments always on, ${cost.managed_floor_per_month():,.0f} a month.",
        "",
        "| W | on demand | managed instances | managed cheaper above (predictions a month) |",
        "|---|---|---|---|",
    ]
    for wait_s in (5, 30, 60):
        on_demand, managed = cost.by_mode(wait_s, join_s, s["sqs"], s["wru"], s["rru"])
        crossover = cost.crossover_per_month(wait_s, join_s, s["sqs"], s["wru"], s["rru"])
        rows.append(
            f"| {wait_s} s | ${on_demand.front_and_queue:,.2f} | ${managed.front_and_queue:,.2f} | "
            f"{crossover / 1e6:,.1f} M |"
        )
    return rows


def prices() -> str:
    """The list prices `cost.py` applies, as a sentence (from its constants)."""
    m = cost.PER_MILLION
    return (
        f"AWS list prices, us-east-1, on demand (`bench/cost.py`): API Gateway REST "
        f"${cost.API_GATEWAY_REST_PER_REQUEST * m:.2f}/M requests, Lambda ${cost.LAMBDA_PER_REQUEST * m:.2f}/M "
        f"invocations + arm64 ${cost.LAMBDA_ARM_PER_GB_S:.10f}/GB-s (ApiFunction {cost.API_LAMBDA_GB * 1024:.0f} MB, "
        f"StreamFunction {cost.STREAM_LAMBDA_GB * 1024:.0f} MB), {cost.HTTP_REQUESTS_PER_JOB} API Gateway requests "
        f"and invocations per request (a join and a stream), SQS ${cost.SQS_PER_REQUEST * m:.2f}/M calls, DynamoDB "
        f"on-demand ${cost.DYNAMODB_PER_WRU * m:.3f}/M WRU and ${cost.DYNAMODB_PER_RRU * m:.3f}/M RRU"
    )


def _find(cells: Sequence[Any], target: str, workload: str, devices: int, users: int) -> Any:
    return next(
        (c for c in cells if (c.target, c.workload, c.devices, c.users) == (target, workload, devices, users)), None
    )


def operations_table(cells: Sequence[Any]) -> list[str]:
    """Calls and capacity units per completed request by role and operation, for the chosen Surge
    cells side by side, then the cost of a million such requests from those figures."""
    chosen = [c for w, u in OPERATION_CELLS if (c := _find(cells, "surge", w, 1, u)) is not None and c.completed >= 10]
    if not chosen:
        return ["No Surge cell of the chosen ones completed 10 requests.", ""]
    join_s = _join_floor_s(cells)
    per = [_per_request(c) for c in chosen]
    keys = sorted({k for p in per for k in p}, key=lambda k: (k.split(": ", 1)[0] != "front", k))
    columns = [f"`{c.workload}` {c.users} user{'s' if c.users != 1 else ''}" for c in chosen]
    lines = [
        "| role: operation (calls · capacity units per request) | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(chosen),
    ]
    for key in keys:
        values = []
        for p in per:
            count, units = p.get(key, [0.0, 0.0])
            values.append(f"{count:.2f} · {units:.2f}" if count else "-")
        lines.append(f"| {key} | " + " | ".join(values) + " |")
    sums = [_summary(c) for c in chosen]
    lines += [
        "| **all AWS calls** | " + " | ".join(f"**{s['total']:.2f}**" for s in sums) + " |",
        "| of which front: join · stream | " + " | ".join(f"{s['join']:.2f} · {s['stream']:.2f}" for s in sums) + " |",
        "| of which worker | " + " | ".join(f"{s['worker']:.2f}" for s in sums) + " |",
        "| **DynamoDB WRU · RRU** | " + " | ".join(f"**{s['wru']:.2f} · {s['rru']:.2f}**" for s in sums) + " |",
        "| SQS calls | " + " | ".join(f"{s['sqs']:.2f}" for s in sums) + " |",
        "| requests completed in the window | " + " | ".join(f"{c.completed}" for c in chosen) + " |",
        "",
        "Cost of a million such requests, $ (from the figures above, the stream's open seconds and the "
        "join time; see the prices above):",
        "",
        "| item | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(chosen),
    ]
    costs = [_cost(c, join_s) for c in chosen]
    lines.append(
        "| (stream open s · join s billed) | "
        + " | ".join(f"{c.stream_s or 0:.2f} · {min(c.join_s or join_s, join_s):.3f}" for c in chosen)
        + " |"
    )
    for name in vars(costs[0]):
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(f"{vars(k)[name]:,.2f}" for k in costs) + " |")
    lines.append("| **total** | " + " | ".join(f"**{k.total:,.2f}**" for k in costs) + " |")
    return [*lines, ""]


def client_table(client_cells: Sequence[Any]) -> list[str]:
    """The gradio_client predict loop, Gradio and Surge side by side."""
    lines = [
        "| workload | clients | target | calls/s | p50 ms | p95 ms | failed calls | left in flight "
        "| AWS calls per call | clients built in s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(WORKLOADS)
    for c in sorted(client_cells, key=lambda c: (order.index(c.workload), c.users, c.target)):
        failed = f"{c.failed} ({', '.join(f'{k}: {v}' for k, v in c.failure_kinds.items())})" if c.failed else "0"
        aws = sum(n for ops in c.calls.values() for n, _ in ops.values()) / max(1, c.completed) if c.calls else None
        lines.append(
            f"| {c.workload} | {c.users} | {c.target} | {c.throughput:,.1f} | {_ms(c.p50_s)} | {_ms(c.p95_s)} "
            f"| {failed} | {c.left_in_flight} | {'-' if aws is None else f'{aws:.1f}'} | {c.setup_s:.1f} |"
        )
    return lines


def client_reading(client_cells: Sequence[Any]) -> str:
    def find(target: str, workload: str, users: int) -> Any:
        return next((c for c in client_cells if (c.target, c.workload, c.users) == (target, workload, users)), None)

    parts = []
    for workload in WORKLOADS:
        g1, s1 = find("gradio", workload, 1), find("surge", workload, 1)
        if g1 and s1:
            parts.append(
                f"`{workload}`, 1 client: p50 Gradio {_ms(g1.p50_s)} ms, Surge {_ms(s1.p50_s)} ms; "
                f"p95 {_ms(g1.p95_s)} against {_ms(s1.p95_s)} ms"
            )
        gn, sn = find("gradio", workload, 32), find("surge", workload, 32)
        if gn and sn:
            parts.append(
                f"`{workload}`, 32 clients: Gradio {gn.throughput:.1f} calls/s, Surge {sn.throughput:.1f} calls/s "
                f"({gn.failed} and {sn.failed} failed calls)"
            )
    return "; ".join(parts) + "." if parts else ""


def load_table(meta: dict[str, Any]) -> list[str]:
    """The machine's load average around each group (the machine is shared)."""
    groups = meta.get("groups") or []
    if not groups:
        return []
    lines = [
        f"CPUs: {meta.get('cpu_count')} ({meta.get('cpus_usable', meta.get('cpu_count'))} usable by the run). "
        "Load average (1, 5, 15 min) when each group's target started and after it stopped:",
        "",
        "| driver | target | workload | K | load before | load after | group s |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        before = " / ".join(f"{x:.2f}" for x in g["load_before"])
        after = " / ".join(f"{x:.2f}" for x in g.get("load_after", []))
        lines.append(
            f"| {g['kind']} | {g['target']} | {g['workload']} | {g['devices']} | {before} | {after} "
            f"| {g.get('seconds', 0):.0f} |"
        )
    return [*lines, ""]


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
    if not workloads:
        return
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


def write(out: Path, meta: dict[str, Any], cells: Sequence[Any], client_cells: Sequence[Any] = ()) -> None:
    plot(out / "results.png", cells)
    load = " / ".join(f"{x:.2f}" for x in meta["load_before"])
    load_after = " / ".join(f"{x:.2f}" for x in meta["load_after"])
    lines = [
        "# Viral-load benchmark: Surge and Gradio side by side",
        "",
        f"Measured {meta['when']} on {meta['machine']}; load average (1 / 5 / 15 min) before {load}, after "
        f"{load_after} (the machine is shared; per group in [Machine load](#machine-load)). Whole run "
        f"{meta['run_s']:.0f} s. Each cell: {meta['warmup_s']:g} s warm-up, "
        f"{meta['duration_s']:g} s measured (at least {meta.get('batches_per_window', 1)} model calls of the "
        "workload, so `slow_model`'s 1 s batches get 20 s: a batch ends all at once), then requests in flight "
        f"get up to {meta['drain_s']:g} s to finish. "
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
    ]
    if client_cells:
        lines += [
            "## gradio_client predict loop",
            "",
            "One `gradio_client.Client` per thread, each calling `client.predict(text, api_name=...)` in a loop "
            "(the next call as soon as one returns), against a fresh target per workload (K = 1), Gradio then "
            f"Surge. Each cell: {meta.get('client_warmup_s', 0):g} s warm-up, {meta.get('client_duration_s', 0):g} "
            "s measured; a call counts when it ends inside the window. Latency = the whole `predict` call "
            "(join, stream, result). Failed calls = any exception `predict` raised (type in brackets); the "
            "thread then waits 0.2 s and goes on. Left in flight = calls still running "
            f"{meta['drain_s']:g} s after the window. AWS calls per call: Surge's calls in the window over the "
            "calls completed in it. Building the clients (each reads `/config` and the API info) is outside "
            "the window.",
            "",
            *client_table(client_cells),
            "",
            client_reading(client_cells),
            "",
        ]
    lines += [
        "## Cost per request (Surge)",
        "",
        "AWS calls counted by botocore hooks in the front and worker processes during each window, divided by "
        "the requests completed in it; stream open seconds and join seconds measured by the client. Priced with "
        f"{prices()}. Not included: the GPU instances (per hour), data transfer, logs. "
        f"The join Lambda is billed at the uncontended join time ({_join_floor_s(cells) * 1000:.0f} ms, Surge at "
        "1 user): under load a local join also queues behind the one front process, which a Lambda fleet does "
        "not. The stream Lambda is billed for the seconds the stream was open (the wait the user had), "
        f"${cost.STREAM_LAMBDA_GB * cost.LAMBDA_ARM_PER_GB_S * 1e6:.2f} per million requests per second of wait. "
        "Stream calls are the front's " + ", ".join(f"`{op}`" for op in STREAM_READS) + "; the join's are the "
        "front's other calls.",
        "",
        *cost_table(cells),
        "",
        *mode_table(cells),
        "",
        "### Calls and capacity units per request by operation",
        "",
        "Surge, K = 1. Operation labels: table (`events`: the session log, where jobs live; `state`: the "
        "other items) and, in `state`, the kind of key (`counters`: the admission shards `counters#<n>`); a "
        "transaction or batch lists every label it touches, a batch write its request kinds. "
        "Capacity units: 1 WRU per written item (2 in a transaction), 1 RRU per strongly consistent read, "
        "0.5 otherwise (items under 1 KB / 4 KB).",
        "",
        *operations_table(cells),
        *calls_by_operation(cells, "slow_model"),
        "## CPU time per request",
        "",
        *cpu_table(cells),
        "",
        "## Machine load",
        "",
        *load_table(meta),
    ]
    (out / "results.md").write_text("\n".join(lines))


if __name__ == "__main__":
    import json
    import sys
    from types import SimpleNamespace

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
    saved = json.loads((folder / "results.json").read_text())
    write(
        folder,
        saved["meta"],
        [SimpleNamespace(**c) for c in saved["cells"]],
        [SimpleNamespace(**c) for c in saved.get("client_cells", [])],
    )
