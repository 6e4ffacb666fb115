"""Gradio sse_v3 shapes that gradio_client depends on (each trap in the research notes has a test)."""

from __future__ import annotations

import pytest

from examples.demo_app import app as demo
from surge import protocol
from surge.models import Counters, FunctionStats


def test_config_has_what_gradio_client_needs_to_stay_offline_and_use_sse_v3() -> None:
    config = protocol.config(demo)
    assert config["version"].startswith("6.")
    assert (config["protocol"], config["api_prefix"], config["connect_heartbeat"]) == ("sse_v3", "/gradio_api", False)
    component_ids = {c["id"] for c in config["components"]}
    for dependency in config["dependencies"]:
        assert not dependency["api_name"].startswith("/")
        assert set(dependency["inputs"]) | set(dependency["outputs"]) <= component_ids
    assert [d["api_name"] for d in config["dependencies"]] == ["echo", "trim_words", "stream_tokens", "sim_gpu"]


def test_info_lists_named_and_unnamed_endpoints_with_parameter_names() -> None:
    info = protocol.info(demo)
    assert info["unnamed_endpoints"] == {}
    trim = info["named_endpoints"]["/trim_words"]
    assert [p["parameter_name"] for p in trim["parameters"]] == ["words", "lengths"]
    assert all("parameter_has_default" in p for p in trim["parameters"])
    assert len(trim["returns"]) == 1


def test_generator_chunks_after_the_first_are_edit_lists() -> None:
    assert protocol.diff(["tok0"], ["tok0 tok1"]) == [[["append", [], " tok1"]]]
    assert protocol.diff(["abc"], ["xyz"]) == [[["replace", [], "xyz"]]]
    assert protocol.diff([1, "a"], [1, "ab"]) == [[], [["append", [], "b"]]]


def test_error_output_has_exactly_the_keys_gradio_client_accepts() -> None:
    message = protocol.failed("e1", "boom")
    assert message["success"] is False
    assert set(message["output"]) == {"error", "title", "visible", "duration"}


@pytest.mark.parametrize(
    ("rank", "slots", "expected"),
    [(0, 1, 0.1), (15, 1, 0.1), (16, 1, 0.2), (33, 1, 0.3), (33, 2, 0.2), (33, 4, 0.1)],
)
def test_eta_counts_the_batches_ahead_spread_over_slots(rank: int, slots: int, expected: float) -> None:
    sim_gpu = demo.get("sim_gpu")
    eta = protocol.estimate_eta(sim_gpu, rank, FunctionStats(avg_batch_s=0.1), slots)
    assert eta == pytest.approx(expected)


def test_eta_is_unknown_before_a_first_run_without_a_hint_and_uses_the_hint_otherwise() -> None:
    trim = demo.get("trim_words")
    assert protocol.estimate_eta(trim, 3, FunctionStats(), 1) is None
    assert protocol.estimate_eta(demo.get("echo"), 2, FunctionStats(), 1) == pytest.approx(0.03)


def test_rank_comes_from_counters() -> None:
    counters = Counters(waiting=5, tail={"g": 10}, head={"g": 6})
    assert counters.queue_size("g") == 4
    assert counters.rank("g", 7) == 0
    assert counters.rank("g", 10) == 3
    message = protocol.estimation_for(demo.get("echo"), "e", "g", 10, counters, FunctionStats(avg_batch_s=0.5), 1)
    assert (message["rank"], message["queue_size"], message["rank_eta"]) == (3, 4, 2.0)
