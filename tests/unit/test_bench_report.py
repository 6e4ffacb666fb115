"""The benchmark's AWS call labels (bench/inject/sitecustomize.py) and its per-operation tables."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from bench import report
from bench.workloads import WORKLOADS

ROOT = Path(__file__).resolve().parents[2]


def _counter() -> ModuleType:
    """The call counter loaded by path (importing it as `sitecustomize` would shadow the real one);
    without BENCH_CALLCOUNT_DIR it installs nothing."""
    spec = importlib.util.spec_from_file_location("bench_callcount", ROOT / "bench/inject/sitecustomize.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labels_follow_the_data_path() -> None:
    what = _counter()._what
    job = {"session_hash": {"S": "abc"}, "sk": {"S": "job1"}}
    shard = {"pk": {"S": "counters#3"}, "sk": {"S": "app"}}
    assert what("GetItem", {"TableName": "surge-state", "Key": shard}) == " state/counters"
    assert what("GetItem", {"TableName": "surge-events", "Key": job}) == " events"
    query = {"TableName": "surge-events", "ExpressionAttributeValues": {":s": {"S": "abc"}}}
    assert what("Query", query) == " events"
    leases = {"TableName": "surge-state", "ExpressionAttributeValues": {":pk": {"S": "lease#g"}}}
    assert what("Query", leases) == " state/lease"
    shards = {"RequestItems": {"surge-state": {"Keys": [shard, {**shard, "pk": {"S": "counters#0"}}]}}}
    assert what("BatchGetItem", shards) == " state/counters"
    admit = {
        "TransactItems": [
            {"Put": {"TableName": "surge-events", "Item": job}},
            {"Update": {"TableName": "surge-state", "Key": shard}},
        ]
    }
    assert what("TransactWriteItems", admit) == " events+state/counters"
    forget = {"RequestItems": {"surge-events": [{"DeleteRequest": {"Key": job}}]}}
    assert what("BatchWriteItem", forget) == " events (delete)"
    finish = {"RequestItems": {"surge-events": [{"PutRequest": {"Item": job}}]}}
    assert what("BatchWriteItem", finish) == " events (put)"


def _cell(workload: str, users: int, calls: dict[str, Any], completed: int = 10) -> SimpleNamespace:
    return SimpleNamespace(
        target="surge",
        workload=workload,
        devices=1,
        users=users,
        completed=completed,
        calls=calls,
        join_s=0.02,
        stream_s=0.5,
    )


def test_count_dump_never_raises_in_the_measured_process(tmp_path: Path, monkeypatch: Any) -> None:
    """`_dump` is the SIGUSR1 handler of the front and the workers: an exception there ends the process
    it measures (a callcount folder nobody created killed both at the first snapshot)."""
    counter = _counter()
    counter._COUNTS["sqs.SendMessage"] = [3, 0.0]
    missing = tmp_path / "not-yet" / "calls"
    monkeypatch.setenv("BENCH_CALLCOUNT_DIR", str(missing))
    counter._dump()
    (written,) = missing.glob("*.json")
    assert json.loads(written.read_text()) == {"sqs.SendMessage": [3, 0.0]}
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("BENCH_CALLCOUNT_DIR", str(blocked))
    counter._dump()  # cannot write there: reported on stderr, not raised


def test_summary_splits_stream_join_and_worker_and_units() -> None:
    calls = {
        "front": {
            "dynamodb.TransactWriteItems events+state/counters": [10, 40.0],
            "sqs.SendMessage": [10, 0.0],
            "dynamodb.Query events": [20, 20.0],
            "dynamodb.BatchGetItem state/counters": [5, 20.0],
            "dynamodb.BatchWriteItem events (delete)": [10, 10.0],
        },
        "worker": {"dynamodb.BatchWriteItem events (put)": [1, 10.0]},
    }
    s = report._summary(_cell("sim_gpu", 16, calls))
    assert (s["join"], s["stream"], s["worker"]) == (2.0, 3.5, 0.1)
    assert s["wru"] == 6.0  # 4 (admission) + 1 (forget) + 1 (finish)
    assert s["rru"] == 4.0
    assert s["sqs"] == 1.0


def test_operations_table_shows_the_chosen_cells_and_their_cost() -> None:
    calls = {"front": {"dynamodb.Query events": [20, 20.0]}}
    cells = [_cell("sim_gpu", 64, calls), _cell("echo", 1, calls), _cell("sim_gpu", 1000, calls)]
    text = "\n".join(report.operations_table(cells))
    assert "`sim_gpu` 64 users | `echo` 1 user |" in text
    assert "1000 users" not in text
    assert "| front: dynamodb.Query events | 2.00 · 2.00 | 2.00 · 2.00 |" in text
    assert "| **total** |" in text


def test_client_table_puts_both_targets_side_by_side() -> None:
    cells = [
        SimpleNamespace(
            target=target,
            workload="echo",
            users=32,
            throughput=10.0,
            p50_s=0.1,
            p95_s=0.2,
            failed=1 if target == "surge" else 0,
            failure_kinds={"CancelledError": 1} if target == "surge" else {},
            left_in_flight=0,
            setup_s=1.0,
            completed=50,
            calls={"front": {"sqs.SendMessage": [50, 0.0]}} if target == "surge" else {},
        )
        for target in ("surge", "gradio")
    ]
    rows = report.client_table(cells)[2:]
    assert rows[0].startswith("| echo | 32 | gradio |")
    assert "| 1 (CancelledError: 1) |" in rows[1]
    assert "| 1.0 | 1.0 |" in rows[1]


def test_a_waiting_visitor_pays_every_counters_read_on_demand_and_a_share_on_managed_instances() -> None:
    """A minute more of waiting costs an on-demand stream its Lambda's duration and its own counters read
    every tick (its environment holds no other stream); on managed instances the instance time and the
    reads are shared by the environment's streams."""
    from bench import cost

    short, long = cost.by_mode(5, 0.02, 1.4, 8.0, 2.5), cost.by_mode(65, 0.02, 1.4, 8.0, 2.5)
    lone = (cost.lone_counters_rru(65) - cost.lone_counters_rru(5)) * cost.DYNAMODB_PER_RRU * cost.PER_MILLION
    duration = 60 * cost.STREAM_LAMBDA_GB * cost.LAMBDA_ARM_PER_GB_S * cost.PER_MILLION
    assert long[0].front_and_queue - short[0].front_and_queue == pytest.approx(duration + lone)
    # Far back, a lone visitor's hub reads at the slow tick: well under half the base tick's reads.
    assert cost.lone_counters_rru(30) < 0.5 * 30 / cost.COUNTERS_TICK_S * cost.COUNTERS_READ_RRU
    reads = 60 / cost.COUNTERS_TICK_S * cost.COUNTERS_READ_RRU * cost.DYNAMODB_PER_RRU * cost.PER_MILLION
    shared = reads / cost.STREAMS_PER_ENVIRONMENT
    instance = 60 / 3600 / (cost.STREAMS_PER_ENVIRONMENT * cost.ENVIRONMENTS_PER_INSTANCE) * cost.PER_MILLION
    compute = instance * cost.MANAGED_INSTANCE_PER_H * (1 + cost.MANAGED_FEE)
    assert long[1].front_and_queue - short[1].front_and_queue == pytest.approx(compute + shared)


@pytest.mark.parametrize("workload", [*WORKLOADS, "crowd"])
def test_every_app_the_benchmark_serves_loads_as_the_launcher_loads_it(workload: str) -> None:
    """`make bench` starts each Surge target with `load_app`: an app refused at import (an `eta_hint_s`
    of 0 once was) stops the whole run at its first Surge group."""
    from surge.application import load_app

    app = load_app(f"bench.apps.surge_apps:{workload}")
    assert [function.api_name for function in app.functions] == [workload]
