"""`make run`'s checks of what a user gives it (settings, workers, port) and of its own start: a mistake is
refused in one line before anything starts, and a start that cannot finish says why at once."""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from surge_local.launcher import (
    LocalStack,
    StartFailed,
    _workers,
    cannot_start,
    exported_settings,
    free_port,
    wait_for_port,
)


def test_a_setting_without_bounds_can_be_exported_and_an_impossible_value_is_refused() -> None:
    """`RUN_WAIT_S=10 make run` (any setting declared without bounds) failed with a TypeError from
    the check itself; `LEASE_TTL_S=inf` passed it and then broke every worker; `MAX_PAYLOAD_BYTES` above
    what an SQS message carries let inputs through that every send then refused ("try again")."""
    taken = exported_settings({"RUN_WAIT_S": "10", "MAX_THREADS": "4", "CORS_ALLOW_ORIGINS": "http://localhost:3000"})
    assert taken == {"run_wait_s": 10.0, "max_threads": 4, "cors_allow_origins": "http://localhost:3000"}
    for name, value, reason in (
        ("LEASE_TTL_S", "inf", "finite number"),
        ("HEARTBEAT_INTERVAL_S", "nan", "finite number"),
        ("JOB_TTL_S", "-5", "greater than or equal to 60"),
        ("STREAM_MAX_S", "0", "greater than 0"),
        ("MAX_PAYLOAD_BYTES", "100000000", "less than or equal to 1000000"),
    ):
        with pytest.raises(ValueError) as refused:
            exported_settings({name: value})
        assert str(refused.value).startswith(f"the environment's {name}={value!r} is not a setting's value")
        assert reason in str(refused.value)


def test_workers_and_port_out_of_range_are_refused_before_anything_starts() -> None:
    """`WORKERS=0` started a stack with no worker (calls waited 20 minutes); `PORT=70000` ended in a
    traceback from `bind()`."""
    assert _workers("2") == 2
    for text in ("0", "-2", "abc"):
        with pytest.raises(argparse.ArgumentTypeError, match="1 or more"):
            _workers(text)
    assert cannot_start("examples.demo_app:app", 70000) == (
        "surge: PORT=70000 is not a port: choose one from 1 to 65535, e.g. make run PORT=7860"
    )


def test_a_front_that_exits_while_another_server_answers_its_port_ends_the_start_at_once() -> None:
    """Two `make run`s on one port at once both passed the port check; the second's front could not bind,
    but the first's answered the port, and the second printed its URL and ran on without a front. A
    stack now waits for its own front (its header), and for as long as that front is alive."""
    port = free_port()

    class Other(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Other)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(StartFailed, match=f"the front exited with 3 .*another server on port {port}"):
            _wait_with_front("import time, sys; time.sleep(1); sys.exit(3)", port)
    finally:
        server.shutdown()


def test_ctrl_c_while_starting_ends_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(StartFailed, match="stopped while starting"):
        wait_for_port(free_port(), 30, stop=stop)
    with pytest.raises(StartFailed, match=r"^stopped while starting$"):
        _wait_with_front("import time; time.sleep(30)", free_port(), stop)


def _wait_with_front(code: str, port: int, stop: threading.Event | None = None) -> None:
    """A stack's wait for its own front on `port`, the front being a process that runs `code`."""
    front = subprocess.Popen([sys.executable, "-c", code])
    stack = LocalStack("examples.demo_app:app", port=port, stop_starting=stop)
    stack.processes["front"] = front
    try:
        stack._wait_for_front(30)
    finally:
        front.kill()
        front.wait()


def test_a_log_level_slots_app_args_or_app_that_would_fail_later_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each started the stack, printed its URL, and then every worker died (`LOG_LEVEL=verbose`,
    `WORKER_SLOTS=abc`), or the stack served nothing (an app with no function); an unclosed quote in
    `APP_ARGS` said only "No closing quotation"."""
    monkeypatch.setenv("LOG_LEVEL", "verbose")
    assert cannot_start("examples.demo_app:app", 7860) == (
        "surge: LOG_LEVEL='verbose' is not a log level: DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
    monkeypatch.setenv("LOG_LEVEL", "info")
    monkeypatch.setenv("WORKER_SLOTS", "abc")
    assert "WORKER_SLOTS='abc' is not a number of slots" in (cannot_start("examples.demo_app:app", 7860) or "")
    for slots in ("0", "\u00b2"):  # a superscript two is a digit to str.isdigit, not to int()
        monkeypatch.setenv("WORKER_SLOTS", slots)
        assert "is not a number of slots" in (cannot_start("examples.demo_app:app", 7860) or "")
    monkeypatch.delenv("WORKER_SLOTS")
    monkeypatch.setenv("REPLACE_PAUSE_S", "nan")
    assert "REPLACE_PAUSE_S='nan' is not a number of seconds" in (cannot_start("examples.demo_app:app", 7860) or "")
    monkeypatch.delenv("REPLACE_PAUSE_S")
    assert "has no function to serve" in (cannot_start("tests.apps.wait_app:empty", free_port()) or "")
    monkeypatch.setenv("APP_ARGS", '--name "unterminated')
    assert cannot_start("examples.demo_app:app", free_port()) == (
        "surge: APP_ARGS='--name \"unterminated': No closing quotation"
    )


def test_a_misspelled_setting_is_named_with_the_one_it_likely_meant() -> None:
    """`ADMISION_SHARDS=2 make run` ran on the default without a word; the project's other variables and
    the environment's own are not taken for typos."""
    from surge_local.launcher import near_misses

    env = {
        "ADMISION_SHARDS": "2",
        "MAX_PAYLOD_BYTES": "5000",
        "MAX_PAYLOAD_BYTES": "5000",
        "WORKER_SLOTS": "auto",
        "REPLACE_PAUSE_S": "1",
        "APP_ARGS": "",
        "GRADIO_SERVER_PORT": "7860",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": "/usr/bin",
    }
    assert near_misses(env) == {"ADMISION_SHARDS": "ADMISSION_SHARDS", "MAX_PAYLOD_BYTES": "MAX_PAYLOAD_BYTES"}
