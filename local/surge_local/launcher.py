"""The local stack: moto on 127.0.0.1 (one process for SQS, one for DynamoDB), the app's tables and
queues, the front on one port, CPU workers.

`make run` calls `main`; cross-process tests and the benchmark use `LocalStack` directly.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import boto3
import httpx
from fastapi import FastAPI

from surge.application import App, load_app
from surge.settings import Settings
from surge_local import ALSO_SERVED, FIDELITY_VARIABLE, SERVICES
from surge_local.deadletter import DeadLetters
from surge_local.provision import provision
from surge_local.supervision import PARENT_PID_VARIABLE, exit_with_parent

PORT_FREE_WAIT_S = 10.0
"""How long `make run` waits for its port to free (a stack stopped a moment ago) before it refuses."""

LOCAL_TUNING = {
    "poll_wait_s": 1,
    "lease_ttl_s": 6.0,
    "visibility_timeout_s": 30,
    "heartbeat_interval_s": 15.0,
    "session_grace_s": 2.0,
    "join_rate_per_s": 500.0,
    "join_burst": 2000,
}
"""Shorter waits than in AWS so that Ctrl-C and a killed worker resolve in seconds; a join rate per
client that lets one machine's load tests through (every local client is 127.0.0.1)."""

SET_BY_THE_LAUNCHER = {
    "app_module",
    "events_table_name",
    "state_table_name",
    "queue_url_prefix",
    "files_bucket_name",
    "worker_cluster_name",
    "app_declaration_path",
    "ingress_body_limit_bytes",
}
"""Settings the local stack decides (its emulator's resources; no ECS to wake, no declaration, no API
Gateway body limit): an environment variable of the same name is not taken for them."""


def settings_from(env: Mapping[str, str]) -> dict[str, str]:
    """The settings a user exported before `make run` (`ADMISSION_SHARDS=2 make run`), to apply over the
    local defaults: every `Settings` field but those the launcher decides, by its upper-case name. Only
    `make run` takes them (`main`): the stacks of the tests and the benchmark never read the shell's."""
    return {
        name: env[name.upper()]
        for name in Settings.model_fields
        if name not in SET_BY_THE_LAUNCHER and name.upper() in env
    }


def near_misses(env: Mapping[str, str]) -> dict[str, str]:
    """Exported names that are not a setting but nearly spell one (`ADMISION_SHARDS`): each with the setting
    it likely meant. A typo was ignored without a word, and the stack ran on the default."""
    settings = [name.upper() for name in Settings.model_fields if name not in SET_BY_THE_LAUNCHER]
    misses = {}
    for name in env:
        if name in settings or not name.isupper():
            continue
        close = difflib.get_close_matches(name, settings, n=1, cutoff=0.85)
        if close:
            misses[name] = close[0]
    return misses


def exported_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """`settings_from(env)` as typed, checked values (the field's type and bounds); raises ValueError
    naming the first variable whose value is not one."""
    from pydantic import TypeAdapter, ValidationError

    typed: dict[str, Any] = {}
    for name, value in settings_from(env).items():
        field = Settings.model_fields[name]
        try:
            # A field without bounds has no metadata, and `Annotated` needs at least one.
            kind = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
            typed[name] = TypeAdapter(kind, config={"allow_inf_nan": False}).validate_python(value)
        except ValidationError as error:
            reason = error.errors()[0]["msg"]
            raise ValueError(f"the environment's {name.upper()}={value!r} is not a setting's value: {reason}") from None
    return typed


STACK_HEADER = "x-surge-stack"
"""A header the local front puts on every answer: its stack's id (`LocalStack.stack_id`)."""

FRONT_KEEP_ALIVE_S = 65
"""How long the local front keeps an idle client connection open (uvicorn `--timeout-keep-alive`)."""


REPLACE_LIMIT = 3
REPLACE_WINDOW_S = 60.0
"""`make run` starts a front or worker that exits again, at most `REPLACE_LIMIT` times a minute each."""
REPLACE_PAUSE_S = 60.0
"""Past that, it rests this long before it tries again (as ECS keeps starting a service's tasks, with a
backoff): an app mended meanwhile is served without a restart. `REPLACE_PAUSE_S` in the environment sets
it (the tests shorten it)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class StartFailed(RuntimeError):
    """The stack could not start (a process it needs exited, or it was stopped while starting)."""


def wait_for_port(
    port: int,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    name: str = "",
    stop: threading.Event | None = None,
) -> None:
    """Until something listens on the port; `process` (the one that should), if it exits first, or `stop`,
    if set meanwhile (Ctrl-C), ends the wait with `StartFailed`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        _still_starting(process, name, port, stop)
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def _still_starting(
    process: subprocess.Popen[bytes] | None, name: str, port: int, stop: threading.Event | None
) -> None:
    if stop is not None and stop.is_set():
        raise StartFailed("stopped while starting")
    if process is not None and process.poll() is not None:
        raise StartFailed(
            f"the {name} exited with {process.returncode} before it served 127.0.0.1:{port} (its error is above)"
        )


def aws_env(endpoints: Mapping[str, str]) -> dict[str, str]:
    """Point every AWS SDK call at the emulators with fake credentials; no real account is reachable.

    boto3 (botocore >= 1.31) takes `AWS_ENDPOINT_URL_<SERVICE>` over `AWS_ENDPOINT_URL`, which catches
    any other service (on the DynamoDB emulator, which refuses it)."""
    return {
        "AWS_ENDPOINT_URL": endpoints["dynamodb"],
        **{f"AWS_ENDPOINT_URL_{service.upper()}": url for service, url in endpoints.items()},
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }


def emulator_client_kwargs(endpoint_url: str) -> dict[str, str]:
    """`boto3.client` arguments that reach the emulator whatever this process's environment says."""
    return {
        "endpoint_url": endpoint_url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_session_token": "testing",
    }


@dataclass
class LocalStack:
    """Starts and stops the whole local stack as child processes."""

    app_spec: str
    port: int = 7860
    workers: int | Mapping[str, int] = 1
    tuning: Mapping[str, Any] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    front_env: Mapping[str, str] = field(default_factory=dict)
    """Environment of the front process only, over `extra_env` (e.g. a front that reads a built AppLayer)."""
    quiet: bool = True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    served: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Worker process name -> the functions it serves."""
    env: dict[str, str] = field(default_factory=dict)
    settings: Settings | None = None
    app: App | None = None
    fidelity: bool = field(default_factory=lambda: os.environ.get(FIDELITY_VARIABLE, "") not in ("", "0"))
    """Run the emulator in fidelity mode (DynamoDB's per-item conflicts and throughput caps)."""
    endpoints: dict[str, str] = field(default_factory=dict)
    """Service ("sqs", "dynamodb") -> the URL of its emulator process, as this process reaches it."""
    route_aws: Callable[[str], str] | None = None
    """Given an emulator's URL, the URL the front and workers use instead (fault tests put a proxy there)."""
    dead_letters: DeadLetters | None = None
    """Fails the jobs SQS dead-letters, as DeadLetterFunction does on AWS."""
    _specs: dict[str, tuple[list[str], Mapping[str, str] | None]] = field(default_factory=dict)
    """Process name -> how it was started (`replace`)."""
    stop_starting: threading.Event | None = None
    """Set (Ctrl-C): `start` stops waiting for its processes and raises `StartFailed`."""
    stack_id: str = field(default_factory=lambda: secrets.token_hex(8))
    """Named by this stack's front on every answer (`STACK_HEADER`)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sqs_endpoint_url(self) -> str:
        return self.endpoints["sqs"]

    @property
    def dynamodb_endpoint_url(self) -> str:
        return self.endpoints["dynamodb"]

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client of `service` ("sqs", "dynamodb") that reaches its emulator directly."""
        return boto3.client(service, **emulator_client_kwargs(self.endpoints[service]), **kwargs)  # type: ignore[call-overload]

    def start(self) -> LocalStack:
        base = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"}
        ports = {service: free_port() for service in SERVICES}
        self.endpoints = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
        routed = {s: self.route_aws(url) if self.route_aws else url for s, url in self.endpoints.items()}
        self.env = {**base, **aws_env(routed), **self.extra_env}
        for service, port in ports.items():
            served = ",".join((service, *ALSO_SERVED.get(service, ())))
            argv = [sys.executable, "-m", "surge_local.emulator", "--port", str(port), "--services", served]
            self._spawn(
                f"emulator:{service}", [*argv, "--parent-pid", str(os.getpid())] + ["--fidelity"] * self.fidelity
            )
        for service, port in ports.items():
            name = f"emulator:{service}"
            wait_for_port(port, 30, self.processes[name], name, self.stop_starting)
        app = self.app = load_app(self.app_spec)
        tuning = {**LOCAL_TUNING, **self.tuning}
        resources = provision(
            app,
            visibility_timeout_s=int(tuning["visibility_timeout_s"]),
            max_receive_count=int(tuning.get("max_attempts", 3)) + 2,
            client_kwargs=emulator_client_kwargs(self.dynamodb_endpoint_url),
            endpoints=self.endpoints,
        )
        self.settings = Settings(app_module=self.app_spec, **vars(resources), **tuning)
        self.env.update(self.settings.to_env())
        names = [f.api_name for f in app.functions]
        _still_starting(None, "", self.port, self.stop_starting)  # Ctrl-C while the app loaded: start no more
        self.dead_letters = DeadLetters(self.settings, names, self.client("sqs"), self.client("dynamodb")).start()
        self._spawn(
            "front",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "surge_local.launcher:local_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                # Past the idle time of clients' pools (httpx: 5 s, uvicorn's default too): a client drops
                # an idle connection before the front does, so it never reuses one the front is closing
                # (a join sent on it failed with ReadError). API Gateway holds idle connections longer still.
                "--timeout-keep-alive",
                str(FRONT_KEEP_ALIVE_S),
                # Which stack's front answers the port: another `make run` started at the same moment on it
                # passes the port check too, and its front answering must not count as this one's.
                "--header",
                f"{STACK_HEADER}:{self.stack_id}",
            ],
            self.front_env,
        )
        # Worker process i serves every function that has more than i workers, as Gradio's one process
        # serves every event: a Blocks app of ten events is one process, not ten that each import gradio
        # and the app (about 180 MB and 6 s of CPU apiece here). On AWS each function has its service.
        hosts = [f.api_name for f in app.functions if app.host_of(f) is f]  # a lane runs in its host's workers
        counts = {name: self.workers if isinstance(self.workers, int) else self.workers.get(name, 1) for name in hosts}
        for i in range(max(counts.values(), default=0)):
            names = [name for name in hosts if counts[name] > i]
            self.start_worker(names, f"{'+'.join(names)}-{i}")
        # A Gradio app's front imports gradio beside workers doing the same: on two busy cores that
        # has taken 25 s.
        self._wait_for_front(90)
        return self

    def _wait_for_front(self, timeout_s: float) -> None:
        """Until this stack's own front answers on its port (`STACK_HEADER`); its exit first (the port
        taken by another server, the app failing in the front) ends the wait with `StartFailed`."""
        front = self.processes["front"]
        deadline = time.monotonic() + timeout_s
        wait_for_port(self.port, timeout_s, front, "front", self.stop_starting)
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"{self.url}/config", timeout=5, trust_env=False)  # never through a proxy
                if answer.headers.get(STACK_HEADER) == self.stack_id:
                    answer.raise_for_status()
                    return
            except httpx.TransportError:
                pass
            try:
                _still_starting(front, "front", self.port, self.stop_starting)
            except StartFailed as failed:
                if front.poll() is None:
                    raise
                raise StartFailed(f"{failed}; is another server on port {self.port}?") from None
            time.sleep(0.1)
        raise TimeoutError(f"the front did not serve 127.0.0.1:{self.port} within {timeout_s} s")

    def start_worker(self, api_names: str | Sequence[str], name: str) -> subprocess.Popen[bytes]:
        """A worker process (named `worker:<name>`) serving these functions."""
        served = (api_names,) if isinstance(api_names, str) else tuple(api_names)
        self.served[f"worker:{name}"] = served
        argv = [sys.executable, "-m", "surge_local.child"]
        return self._spawn(f"worker:{name}", argv, {"WORKER_API_NAME": ",".join(served)})

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        output = subprocess.DEVNULL if self.quiet else None
        child_env = {**self.env, **(env or {}), PARENT_PID_VARIABLE: str(os.getpid())}
        # A session (so a process group) of its own: a terminal's Ctrl-C reaches the launcher alone, which stops
        # the children in order (workers before the emulators they record to), not every process at once. A
        # session is also a scheduling group (Linux autogroup): each service of the stack gets its share of
        # the CPU beside a load generator started from the same shell, as AWS's services and Lambdas would
        # not share its CPU. Sharing one group with 200 gradio_client threads, the DynamoDB emulator got 8 %
        # of a core, joins took seconds and gradio_client's 5 s join timeout failed 143 of 180 calls.
        process = subprocess.Popen(argv, env=child_env, stdout=output, stderr=output, start_new_session=True)
        self.processes[name] = process
        self._specs[name] = (argv, env)
        return process

    def replace(self, name: str) -> subprocess.Popen[bytes]:
        """Start the front or a worker again as it was started (ECS replaces a stopped task, Lambda a
        failed environment). The emulators cannot be: AWS's state lived in them."""
        if name.startswith("emulator:"):
            raise ValueError(f"{name} held the local AWS state; it cannot be started again")
        argv, env = self._specs[name]
        return self._spawn(name, argv, env)

    def workers_of(self, api_name: str) -> dict[str, subprocess.Popen[bytes]]:
        """The running worker processes that serve the function."""
        return {n: p for n, p in self.processes.items() if api_name in self.served.get(n, ()) and p.poll() is None}

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM the children in waves, each once the one before has exited (or been killed at the
        deadline): the workers (they finish their batch, record it and give back the rest, all through
        the emulators), then the front, then the emulators. Signalled all at once, a worker stopped
        mid-batch found the emulators gone, retried recording its results until the deadline and was
        killed: its batch was lost and every such stop took `timeout_s`."""
        if self.dead_letters is not None:
            self.dead_letters.stop()
        waves: list[list[subprocess.Popen[bytes]]] = [[], [], []]
        for name, process in self.processes.items():
            waves[2 if name.startswith("emulator:") else 1 if name == "front" else 0].append(process)
        deadline = time.monotonic() + timeout_s
        for wave in waves:
            for process in wave:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in wave:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()
        self.served.clear()


def local_app() -> FastAPI:
    """uvicorn factory for the front process: one port, both apps, settings from the environment."""
    from surge.front import create_local_app
    from surge.wiring import build_front

    if PARENT_PID_VARIABLE in os.environ:
        exit_with_parent(int(os.environ[PARENT_PID_VARIABLE]))
    return create_local_app(build_front(Settings.from_env(os.environ)))


def cannot_start(app_spec: str, port: int) -> str | None:
    """One line saying why `make run` cannot start (a setting exported with a value of the wrong kind, a bad
    APP=, an app Surge refuses, a port in use), or None."""
    from surge.application import AppNotFound

    try:
        if not 0 <= float(os.environ.get("REPLACE_PAUSE_S", REPLACE_PAUSE_S)) < math.inf:
            raise ValueError
    except ValueError:
        return f"surge: REPLACE_PAUSE_S={os.environ['REPLACE_PAUSE_S']!r} is not a number of seconds, 0 or more"
    level = os.environ.get("LOG_LEVEL", "WARNING")
    if not isinstance(logging.getLevelName(level.upper()), int):
        return f"surge: LOG_LEVEL={level!r} is not a log level: DEBUG, INFO, WARNING, ERROR or CRITICAL"
    slots = os.environ.get("WORKER_SLOTS", "auto")
    if slots != "auto" and not (slots.isascii() and slots.isdigit() and int(slots) >= 1):
        return f"surge: WORKER_SLOTS={slots!r} is not a number of slots: auto, or a whole number 1 or more"
    try:
        exported_settings(os.environ)
    except ValueError as error:
        return f"surge: {error}"
    try:
        load_app(app_spec)
    except (AppNotFound, ValueError) as error:  # the Gradio adapter's refusals are ValueErrors naming the event
        return f"surge: {error}"
    if not 1 <= port <= 65535:
        return f"surge: PORT={port} is not a port: choose one from 1 to 65535, e.g. make run PORT=7860"
    # A stack stopped by Ctrl-C a moment ago holds its port while it finishes its batches (a few seconds):
    # a `make run` right after waits for it, as long as that takes, before calling the port taken.
    deadline = time.monotonic() + PORT_FREE_WAIT_S
    while not _port_free(port):
        if time.monotonic() >= deadline:
            return (
                f"surge: port {port} is in use on 127.0.0.1 (waited {PORT_FREE_WAIT_S:g} s for it to free); "
                f"stop what holds it, or choose another, e.g. make run PORT={port + 1}"
            )
        time.sleep(0.25)
    return None


def _workers(text: str) -> int:
    """`--workers` (`WORKERS=` of `make run`): a whole number, 1 or more."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of worker processes, 1 or more (WORKERS=)")
    return count


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        # As uvicorn binds: connections of a stopped server (TIME_WAIT, up to a minute) do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def app_from_file(spec: str) -> str:
    """`APP=path/to/app.py` (`:attribute` optional), as `cd path/to && python app.py` runs an app (and a
    Space runs from its folder): the module of that name, its folder put first on PYTHONPATH and made the
    working directory, here and for every child process, so what the app opens by a relative path
    (`open("labels.txt")`, `gr.Examples([["cat.png"]])`) is found. Any other spec is returned as it is."""
    path, colon, attribute = spec.partition(":")
    file = Path(path)
    if file.suffix != ".py" or not file.is_file():
        return spec
    folder = str(file.resolve().parent)
    sys.path.insert(0, folder)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))
    os.chdir(folder)
    return f"{file.stem}{colon}{attribute}"


def _say_started(stack: LocalStack) -> None:
    """The first screen: the URL, the app's notes, the settings taken from the environment."""
    fidelity = ", DynamoDB's per-item limits emulated" if stack.fidelity else ""
    print(
        f"{stack.url}/  serving {stack.app_spec}  (queue status: {stack.url}/status{fidelity}; Ctrl-C stops)",
        flush=True,
    )
    for note in stack.app.notes if stack.app is not None else []:
        print(note, flush=True)
    exported = settings_from(os.environ)
    if exported:
        taken = ", ".join(f"{name.upper()}={value}" for name, value in sorted(exported.items()))
        print(f"settings from the environment: {taken}", flush=True)
    for name, meant in near_misses(os.environ).items():
        print(f"not a setting, so not taken: {name} (did you mean {meant}?)", flush=True)
    ignored = sorted(name.upper() for name in SET_BY_THE_LAUNCHER - {"app_module"} if name.upper() in os.environ)
    if ignored:
        print(f"not taken from the environment (the local stack sets them): {', '.join(ignored)}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Surge stack locally on 127.0.0.1.")
    parser.add_argument("--app", default=os.environ.get("APP_MODULE", "examples.demo_app:app"))
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes, each serving every function (1; per function on AWS)",
    )
    parser.add_argument(
        "--fidelity", action="store_true", help=f"emulate DynamoDB's per-item limits ({FIDELITY_VARIABLE}=1)"
    )
    args = parser.parse_args(argv)
    args.app = app_from_file(args.app)
    refusal = cannot_start(args.app, args.port)
    if refusal:
        print(refusal, file=sys.stderr, flush=True)
        raise SystemExit(2)
    # Children log warnings and errors only unless LOG_LEVEL says otherwise: the first screen is the URL.
    quiet_logs = {"LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING").upper()}
    stack = LocalStack(
        args.app,
        port=args.port,
        workers=args.workers,
        quiet=False,
        extra_env=quiet_logs,
        tuning=exported_settings(os.environ),
    )
    stack.fidelity = stack.fidelity or args.fidelity
    stopped = threading.Event()
    why = ""
    """Why the stack stopped on its own (an emulator exited), said again once it has stopped."""
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stack.stop_starting = stopped
    try:
        try:
            stack.start()
        except StartFailed as failed:
            why = "" if stopped.is_set() else str(failed)
            raise SystemExit(0 if stopped.is_set() else 1) from None
        _say_started(stack)
        replaced: dict[str, list[float]] = {}
        resting: dict[str, float] = {}
        """Processes that exited too often: when (monotonic) each is tried again."""
        pause_s = float(os.environ.get("REPLACE_PAUSE_S", REPLACE_PAUSE_S))
        while not stopped.wait(1):
            for name, until in list(resting.items()):
                if time.monotonic() >= until:
                    resting.pop(name)
                    replaced[name] = [time.monotonic()]
                    stack.replace(name)
                    print(f"{name}: started again after a pause", file=sys.stderr, flush=True)
            for name, process in list(stack.processes.items()):
                if process.poll() is None:
                    continue
                stack.processes.pop(name)
                said = f"{name} exited with {process.returncode}"
                if name.startswith("emulator:"):
                    why = f"{said}: the local AWS state is gone; stopping"
                    print(why, file=sys.stderr, flush=True)
                    stopped.set()
                    break
                recent = [t for t in replaced.get(name, []) if time.monotonic() - t < REPLACE_WINDOW_S]
                if len(recent) >= REPLACE_LIMIT:
                    resting[name] = time.monotonic() + pause_s
                    print(
                        f"{said}, again ({REPLACE_LIMIT} times in a minute): trying again in {pause_s:.0f} s "
                        "(its error is above; a mended app is served then, without a restart)",
                        file=sys.stderr,
                        flush=True,
                    )
                    continue
                replaced[name] = [*recent, time.monotonic()]
                stack.replace(name)
                # As ECS replaces a task: the jobs the process held come back to the queue when their
                # visibility timeout ends, and another worker (or this one, started again) runs them.
                print(f"{said}; started again", file=sys.stderr, flush=True)
    finally:
        print("stopping...", flush=True)
        stack.stop()
        _stopped_because(why)


def _stopped_because(why: str) -> None:
    """A stack that stopped on its own says why again, last (the other processes' complaints about the
    lost state came after the reason), and exits 1."""
    if why:
        print(f"stopped: {why.removesuffix('; stopping')}", file=sys.stderr, flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
