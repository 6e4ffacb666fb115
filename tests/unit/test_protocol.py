"""Gradio sse_v3 shapes that gradio_client depends on (each trap in the research notes has a test)."""

from __future__ import annotations

import json

import pytest

import surge
from examples.demo_app import app as demo
from surge import protocol
from surge.broker import Delivery
from surge.eta import estimate_eta
from surge.models import Counters, FunctionStats, Shard


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


def test_an_image_is_described_as_the_data_url_string_it_travels_as_not_a_file_to_upload() -> None:
    """`/info` said `filepath`: gradio_client users passed `handle_file(...)`, whose upload a surge.App
    refuses ("This app takes no files.")."""
    app = surge.App()

    @app.function(inputs=["image"], outputs=["image"])
    def flip(picture: str) -> str:
        return picture

    (endpoint,) = protocol.info(app)["named_endpoints"].values()
    for value in (endpoint["parameters"][0], endpoint["returns"][0]):
        assert value["python_type"]["type"] == "str" and value["type"] == {"type": "str"}
        assert value["python_type"]["description"].startswith("a data URL (data:image/png;base64,...)")


def test_generator_chunks_after_the_first_are_edit_lists() -> None:
    assert protocol.diff(["tok0"], ["tok0 tok1"]) == [[["append", [], " tok1"]]]
    assert protocol.diff(["abc"], ["xyz"]) == [[["replace", [], "xyz"]]]
    assert protocol.diff([1, "a"], [1, "ab"]) == [[], [["append", [], "b"]]]


@pytest.mark.parametrize("show_error", [False, True])
def test_an_exception_the_app_raised_is_told_as_gradios_error_payload_gives_it(show_error: bool) -> None:
    """Gradio sends an app's plain exception as `{"error": null}` (its message and `visible` only under
    `show_error`), and its page then marks the output without a toast. Surge added a title, `visible`
    and a duration, and the page showed "Error: An error occurred" where Gradio shows none."""
    from gradio.utils import error_payload

    error = ValueError("disk full")
    message = protocol.failed("e1", str(error) if show_error else None, plain=True)
    assert message["output"] == error_payload(error, show_error)
    assert message["title"] == "Error" and message["success"] is False


def test_error_output_has_exactly_the_keys_gradio_client_accepts() -> None:
    message = protocol.failed("e1", "boom")
    assert message["success"] is False
    assert set(message["output"]) == {"error", "title", "visible", "duration"}


def test_a_message_body_holds_no_character_sqs_refuses_and_reads_back_the_same() -> None:
    """SQS refuses U+FFFE and U+FFFF in a body (moto takes them): such inputs failed every join with 503."""
    from surge.broker import message_body
    from surge.models import Job, JobMessage, JobState

    text = "a\uffffb\ufffe"
    job = Job(
        job_id="j",
        session_hash="s" * 16,
        api_name="echo",
        group="echo",
        state=JobState.WAITING,
        data=[text],
        created_at=1.0,
    )
    body = message_body(job)
    assert "\uffff" not in body and "\ufffe" not in body
    assert JobMessage.model_validate_json(body).data == [text]


def test_success_and_step_messages_carry_every_key_of_gradios_own() -> None:
    """Gradio's `ProcessCompletedMessage` and `ProcessGeneratingMessage`, and its output's keys: a client
    reading `avg_time`, `used_cache` or `changed_state_ids` found them missing."""
    from gradio.server_messages import ProcessCompletedMessage, ProcessGeneratingMessage

    done = protocol.completed("e1", ["hi"], 0.01, 0.02)
    assert set(done) == set(ProcessCompletedMessage.model_fields)
    assert set(done["output"]) == {
        "data",
        "is_generating",
        "duration",
        "average_duration",
        "render_config",
        "changed_state_ids",
        "used_cache",
    }
    assert done["avg_time"] == 0.02 and done["output"]["changed_state_ids"] == []
    assert done["cache_duration"] == 0.01, "as Gradio's: the run's duration"
    assert set(protocol.generating("e1", ["h"])) == set(ProcessGeneratingMessage.model_fields)


@pytest.mark.parametrize(
    ("rank", "slots", "expected"),
    [
        (0, 1, 0.1),  # at the head, the device may be free: its own batch
        (15, 1, 0.15),  # in the next batch: half the running batch (on average) and its own
        (16, 1, 0.25),  # one whole batch ahead besides
        (33, 1, 0.35),
        (33, 2, 0.1 / 3 + 0.1 * (1 + 2 / 2)),  # the first of two busy slots frees after a third of a batch
        (33, 4, 0.1 / 5 + 0.1 * (1 + 2 / 4)),  # two batches ahead on four slots: half a cycle
    ],
)
def test_eta_counts_the_batches_ahead_spread_over_slots(rank: int, slots: int, expected: float) -> None:
    sim_gpu = demo.get("sim_gpu")
    eta = estimate_eta(sim_gpu, rank, FunctionStats(avg_batch_s=0.1), slots)
    assert eta == pytest.approx(expected)


def test_eta_of_a_job_seven_back_behind_two_one_second_slots_is_what_it_waits() -> None:
    """Seven jobs wait ahead of it, two 1 s jobs run: the first slot frees after about a third of a
    second, then a job starts every half second, so the seventh ahead starts about 3.8 s from now and
    this one ends a second after (Gradio says 4.5 s to 5.5 s here, by the running jobs' start times)."""
    eta = estimate_eta(demo.get("echo"), 7, FunctionStats(avg_batch_s=1.0), 2)
    assert eta == pytest.approx(1 / 3 + 7 / 2 + 1)


def test_eta_of_a_job_at_the_front_adds_the_busy_slots_wait_only_when_it_is_known_busy() -> None:
    echo = demo.get("echo")
    assert estimate_eta(echo, 0, FunctionStats(avg_batch_s=1.0), 1) == pytest.approx(1.0)
    assert estimate_eta(echo, 0, FunctionStats(avg_batch_s=1.0), 1, busy=True) == pytest.approx(1.5)


def test_eta_counts_a_batch_as_its_whole_cycle_claim_to_results_when_known() -> None:
    sim_gpu = demo.get("sim_gpu")
    # The model runs 0.1 s, but claiming and recording take the worker 0.2 s more per batch: a visitor
    # 16 places back waits for the running cycle to end (half of one on average) and two whole cycles.
    stats = FunctionStats(avg_batch_s=0.1, avg_cycle_s=0.3)
    assert estimate_eta(sim_gpu, 16, stats, 1) == pytest.approx(0.75)


def test_eta_is_unknown_before_a_first_run_without_a_hint_and_uses_the_hint_otherwise() -> None:
    trim = demo.get("trim_words")
    assert estimate_eta(trim, 3, FunctionStats(), 1) is None
    assert estimate_eta(demo.get("echo"), 2, FunctionStats(), 1) == pytest.approx(0.01 / 2 + 0.03)


def test_rank_is_bounded_by_every_shards_tail_and_only_falls() -> None:
    # Two shards; a job seen after 3 + 2 had joined (tails [3, 2]) is fifth at most.
    counters = Counters(shards=[Shard(joined=3, tail={"g": 3}), Shard(joined=2, tail={"g": 2})])
    tails = counters.tails("g")
    assert counters.queue_size("g") == 5
    assert counters.rank("g", tails) == 4
    # Later joins raise the tails but not this job's rank; claims from either shard lower it.
    later = Counters(
        shards=[
            Shard(joined=6, left=2, tail={"g": 6}, head={"g": 2}),
            Shard(joined=2, left=2, tail={"g": 2}, head={"g": 2}),
        ]
    )
    assert later.queue_size("g") == 4
    assert later.rank("g", tails) == 0
    assert later.waiting == 4 and later.tail == {"g": 8}


def test_a_message_from_a_newer_front_with_fields_this_worker_does_not_know_still_reads() -> None:
    """During a rolling deploy new fronts enqueue for old workers: added fields must not drop the job."""
    body = {
        "job_id": "a" * 32,
        "session_hash": "abcdefgh12",
        "api_name": "echo",
        "group": "echo",
        "shard": 1,
        "data": ["hi"],
        "created_at": 1.0,
        "caller": {"headers": {}, "client_host": "10.0.0.1", "a_later_field": "x"},
        "another_later_field": [1, 2],
    }
    message = Delivery("m", "r", json.dumps(body), 1).message
    assert message is not None and message.job().data == ["hi"] and message.caller is not None
    assert message.caller.client_host == "10.0.0.1"
    assert Delivery("m", "r", json.dumps({"job_id": "x"}), 1).message is None, "not one of ours"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("tok0", "tok0 tok1"),
        ("abc", "xyz"),
        ([["hi", None]], [["hi", "hel"]]),  # a chatbot's history, the answer growing
        (
            [{"role": "user", "content": "a"}],
            [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "c"}],
        ),
        ({"a": [1, 2, 3], "b": {"c": "x"}}, {"a": [1, 3], "b": {"c": "xy", "d": None}}),
        ([1, 2, 3, 4], [1]),
        (None, {"value": [1, 2]}),
    ],
)
def test_applying_a_chunks_diff_rebuilds_the_output_as_gradio_client_does(before: object, after: object) -> None:
    """The curl API's stream rebuilds each generator step whole from the diffs kept in the job's item: the
    same value gradio_client builds from the same diff (Gradio's own diff, and the core's)."""
    from gradio import utils as gradio_utils
    from gradio_client.utils import apply_diff as client_apply_diff

    edits = gradio_utils.diff(before, after)  # type: ignore[no-untyped-call]
    assert protocol.apply_diff(before, edits) == client_apply_diff(before, edits) == after
    if isinstance(before, str) and isinstance(after, str):
        (own,) = protocol.diff([before], [after])
        assert protocol.apply_diff(before, own) == after
    assert protocol.apply_diff(before, []) == before


def test_a_curl_stream_takes_a_step_that_is_no_edit_list_whole() -> None:
    """A worker of the version before kept a curl call's steps whole; while a deploy replaces it, the call's
    stream reads such a step as the whole outputs rather than failing the stream on it."""
    from surge import sse

    outputs: dict[str, list[object]] = {}
    assert sse._whole(outputs, "e", ["tok"]) == ["tok"]
    assert sse._whole(outputs, "e", [[["append", [], " tok"]]]) == ["tok tok"]
    assert sse._whole(outputs, "e", ["tok tok tok"]) == ["tok tok tok"], "a whole step, as an old worker kept it"
    assert sse._whole(outputs, "e", [[["append", [], "!"]]]) == ["tok tok tok!"]
