"""`make run`'s launcher: serves the demo on the port it prints, keeps an idle client connection open past
a client pool's expiry, and Ctrl-C stops every child process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from surge.settings import Settings
from surge_local.launcher import free_port

pytestmark = pytest.mark.crossprocess


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                found.add(int(entry))
    return found


def test_launcher_prints_the_url_serves_the_app_and_ctrl_c_stops_every_child() -> None:
    port = free_port()
    launcher = _launch(port, "--workers", "1")
    try:
        assert launcher.stdout is not None
        deadline = time.monotonic() + 90
        line = ""
        before: list[str] = []
        while time.monotonic() < deadline and f"127.0.0.1:{port}" not in line:
            line = launcher.stdout.readline()
            before.append(line)
        assert line.startswith(f"http://127.0.0.1:{port}/ ")
        assert before == [line], "the first screen is the URL and nothing else"
        children = children_of(launcher.pid)
        assert len(children) == 4, "two emulators (SQS, DynamoDB), the front and one worker for every function"
        assert Client(f"http://127.0.0.1:{port}", verbose=False).predict("hi", api_name="/echo") == "hi"
        assert _answers_after_idle(port, idle_s=6.0), (
            "an idle connection is dropped by the client's pool (httpx: 5 s) before the front closes it"
        )

        # A worker that dies is started again, as ECS replaces a stopped task (it stayed gone: with one
        # worker, every later job waited for ever).
        (worker,) = [pid for pid in children if b"surge_local.child" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(worker, signal.SIGKILL)
        said = launcher.stdout.readline()
        assert said.startswith("worker:") and said.rstrip().endswith("exited with -9; started again"), said
        assert Client(f"http://127.0.0.1:{port}", verbose=False).predict("again", api_name="/echo") == "again"
        children = children_of(launcher.pid)
        assert len(children) == 4 and worker not in children

        # As a terminal's Ctrl-C: SIGINT to the foreground process group. Once every child got it at once:
        # the emulators died first and the workers retried against them, with warnings, until killed.
        os.killpg(launcher.pid, signal.SIGINT)
        assert launcher.wait(timeout=30) == 0
        assert launcher.stdout.read().strip() == "stopping..."
        time.sleep(0.5)
        assert [pid for pid in children if os.path.exists(f"/proc/{pid}") and _alive(pid)] == []
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_an_emulator_that_dies_stops_the_stack_and_its_last_line_says_why() -> None:
    """The reason came first, then some 170 warnings of the other processes retrying against the lost
    state for 25 s: the end of the log did not say why the stack had stopped, and it exited 0."""
    port = free_port()
    launcher = _launch(port, "--workers", "1")
    try:
        assert launcher.stdout is not None
        _line_with(launcher, f"127.0.0.1:{port}", 90)
        (emulator,) = [
            pid
            for pid in children_of(launcher.pid)
            if b"--services\x00dynamodb" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        os.kill(emulator, signal.SIGKILL)
        assert launcher.wait(timeout=90) == 1
        lines = [line for line in launcher.stdout.read().splitlines() if line.strip()]
        assert lines[-1].startswith("stopped: emulator:dynamodb exited with -9: the local AWS state is gone"), lines[
            -3:
        ]
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_make_run_serves_an_apps_file_from_its_own_folder(tmp_path: Path) -> None:
    """`make run APP=path/to/app.py`, as `cd path/to && python app.py` runs an app: the file's folder is on
    no path, yet the front and the worker import it (it was refused: "names a file"), and what it opens
    by a relative path is found there."""
    folder = tmp_path / "my space"
    folder.mkdir()
    (folder / "helpers_of_mine.py").write_text("def shout(text):\n    return text.upper() + MARK\n")
    (folder / "mark.txt").write_text("!")
    (folder / "app.py").write_text(
        "import gradio as gr\n"
        "import helpers_of_mine\n"
        "helpers_of_mine.MARK = open('mark.txt').read()\n"
        "demo = gr.Interface(helpers_of_mine.shout, 'text', 'text', api_name='shout')\n"
        "if __name__ == '__main__':\n"
        "    demo.launch()\n"
    )
    port = free_port()
    launcher = _launch(port, "--app", str(folder / "app.py"))
    try:
        assert launcher.stdout is not None
        first = launcher.stdout.readline()
        assert first.startswith(f"http://127.0.0.1:{port}/ "), first
        assert Client(f"http://127.0.0.1:{port}", verbose=False).predict("hi", api_name="/shout") == "HI!"
        os.killpg(launcher.pid, signal.SIGINT)
        assert launcher.wait(timeout=30) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()


def _launch(port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`make run` in a terminal: its own process group, output read line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "surge_local.launcher", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # Never the developer's exported settings (make run takes them): only those the test gives.
        env={**{k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}, **(env or {})},
    )


def test_a_worker_that_keeps_failing_to_start_is_tried_again_after_a_pause_and_a_mended_app_is_served(
    tmp_path: Path,
) -> None:
    """It was never started again after its third exit in a minute: a mended app needed a restart, and
    once the failure lapsed (15 minutes) visitors waited with no ETA and no error."""
    flag = tmp_path / "broken"
    flag.touch()
    port = free_port()
    env = {"BROKEN_SETUP": str(flag), "REPLACE_PAUSE_S": "3"}
    launcher = _launch(port, "--app", "tests.apps.broken_setup_app:app", "--workers", "1", env=env)
    try:
        assert launcher.stdout is not None
        rests = _line_with(launcher, "): trying again in 3 s", 90)
        assert rests.startswith("worker:") and "exited with 1, again (3 times in a minute)" in rests, rests
        flag.unlink()  # the operator mends the app: no restart
        assert _line_with(launcher, ": started again after a pause", 30).startswith("worker:")
        status = f"http://127.0.0.1:{port}/gradio_api/surge/status"

        def serving() -> bool:
            (function,) = httpx.get(status, timeout=10).json()["functions"]
            return bool(function["workers"]) and function["cannot_start"] is None

        deadline = time.monotonic() + 30
        while not serving() and time.monotonic() < deadline:
            time.sleep(0.2)
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        assert client.predict("olleh", api_name="/predict") == "hello"
    finally:
        _stop(launcher)


def test_settings_exported_before_make_run_apply_and_a_bad_one_is_refused_before_anything_starts() -> None:
    """They were overwritten by the local defaults without a word: `MAX_PAYLOAD_BYTES=5000 make run`
    still took a 20 kB join."""
    port = free_port()
    for value, reason in (
        ("two", "valid integer"),
        ("0", "greater than or equal to 1"),
        ("51", "less than or equal to 50"),
    ):
        refused = _launch(port, env={"ADMISSION_SHARDS": value})
        assert refused.wait(timeout=60) == 2
        assert refused.stdout is not None
        said = refused.stdout.read()
        assert said.startswith(f"surge: the environment's ADMISSION_SHARDS='{value}' is not a setting's value"), said
        assert reason in said, said
    env = {"MAX_PAYLOAD_BYTES": "5000", "VISIBILITY_TIMEOUT_S": "30.0", "EVENTS_TABLE_NAME": "not-the-launchers"}
    launcher = _launch(port, "--workers", "1", env=env)
    try:
        said = _line_with(launcher, "settings from the environment:", 90)
        assert said.strip() == "settings from the environment: MAX_PAYLOAD_BYTES=5000, VISIBILITY_TIMEOUT_S=30.0"
        said = _line_with(launcher, "not taken from the environment", 10)
        assert said.strip().endswith("(the local stack sets them): EVENTS_TABLE_NAME"), said
        join = {"data": ["x" * 8000], "fn_index": 0, "session_hash": "exported0001"}
        answer = httpx.post(f"http://127.0.0.1:{port}/gradio_api/queue/join", json=join, timeout=10)
        assert answer.status_code == 413 and "5000" in answer.text, answer.text
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        assert client.predict("small", api_name="/echo") == "small"
    finally:
        _stop(launcher)


def _stop(launcher: subprocess.Popen[str]) -> None:
    """Ctrl-C to the launcher's process group; killed outright if it has not stopped within 30 s."""
    os.killpg(launcher.pid, signal.SIGINT)
    try:
        launcher.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()


def _line_with(launcher: subprocess.Popen[str], text: str, within_s: float) -> str:
    """The first line of the launcher's output that holds `text` (its children's logs come in between)."""
    assert launcher.stdout is not None
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        line = launcher.stdout.readline()
        if text in line or not line:
            return line
    return ""


def _answers_after_idle(port: int, idle_s: float) -> bool:
    """Whether one keep-alive connection, idle `idle_s` after a request, still serves the next."""
    request = f"GET /config HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        for attempt in range(2):
            if attempt:
                time.sleep(idle_s)
            try:
                connection.sendall(request)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return False
                    head += chunk
            except OSError:
                return False
            headers, body = head.split(b"\r\n\r\n", 1)
            length = int(
                next(
                    line.split(b":")[1] for line in headers.split(b"\r\n") if line.lower().startswith(b"content-length")
                )
            )
            while len(body) < length:
                body += connection.recv(65536)
        return headers.startswith(b"HTTP/1.1 200")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_children_stop_by_themselves_when_the_launcher_is_killed_outright() -> None:
    port = free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "surge_local.launcher", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert launcher.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and f"127.0.0.1:{port}" not in launcher.stdout.readline():
        pass
    children = children_of(launcher.pid)
    assert children
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    assert [pid for pid in children if _alive(pid)] == []
