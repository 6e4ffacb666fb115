"""`make run`'s first minute: a bad APP=, an app Surge refuses, or a port in use is one line, not a traceback."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from surge_local import launcher
from surge_local.launcher import cannot_start, free_port


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        ("nothere:app", "surge: APP=nothere:app: no module 'nothere'; expected module:attribute"),
        ("app.py", "surge: APP=app.py names a file that is not there: /"),
        ("spaces/app.py:ui", "surge: APP=spaces/app.py:ui names a file that is not there"),
        ("examples.demo_app:nope", "surge: APP=examples.demo_app:nope: examples.demo_app has no nope; expected"),
        ("examples.demo_app:sim_gpu", "surge: APP=examples.demo_app:sim_gpu: examples.demo_app.sim_gpu is a function"),
        ("examples.demo_app:_device", "surge: APP=examples.demo_app:_device: examples.demo_app._device is a lock;"),
        ("tests.apps.gradio_apps:streamed", "surge: event 'mirror' (<lambda>) is a .stream() event"),
        ("tests.apps.needs_a_package:demo", "surge: APP=tests.apps.needs_a_package:demo imports 'surge_no_such_dep"),
    ],
)
def test_what_cannot_start_is_said_in_one_line(spec: str, line: str) -> None:
    said = cannot_start(spec, free_port())
    assert said is not None and said.startswith(line) and "\n" not in said


def test_a_missing_files_message_says_where_it_looked_and_how_to_name_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make -C repo run APP=app.py` from the app's folder: the path is the repository's, which the
    message did not say (it suggested `APP=app:demo` for a file that is not there)."""
    monkeypatch.chdir(tmp_path)
    said = cannot_start("counter.py", free_port())
    assert said == (
        f"surge: APP=counter.py names a file that is not there: {tmp_path / 'counter.py'} (a relative path is taken "
        f"from the folder make runs in, {tmp_path}; give the app's full path, e.g. APP=$PWD/counter.py)"
    )


def test_a_port_in_use_suggests_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "PORT_FREE_WAIT_S", 0.5)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert cannot_start("examples.demo_app:app", port) == (
            f"surge: port {port} is in use on 127.0.0.1 (waited 0.5 s for it to free); stop what holds it, "
            f"or choose another, e.g. make run PORT={port + 1}"
        )
    assert cannot_start("examples.gradio_image_app:demo", free_port()) is None


def test_a_port_a_stopping_stack_still_holds_is_waited_for() -> None:
    """Ctrl-C, then `make run` at once: the stack stopping holds its port for a few seconds while it finishes
    its batches; the new one refused at once ("port in use; choose another")."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    threading.Timer(1.0, taken.close).start()  # the old stack exits a second later
    started = time.monotonic()
    assert cannot_start("examples.demo_app:app", port) is None
    assert time.monotonic() - started >= 0.9


def test_a_port_left_by_a_stopped_server_is_free_again() -> None:
    """`make run` stopped and started again at once: its old connections wait in TIME_WAIT, and uvicorn
    binds the port anyway (SO_REUSEADDR), so the check must not call it in use."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert cannot_start("examples.demo_app:app", port) is not None
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server closes first: its end waits in TIME_WAIT on `port`
            client.recv(1)
    assert cannot_start("examples.demo_app:app", port) is None
