"""Fault, burst and bad-input scenarios, each returning the figures `make chaos` prints.

Every scenario takes its scale as arguments: `make test` runs them small, `make chaos` large.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from surge.models import JobMessage
from surge.settings import Settings
from surge.store import Store
from surge_local.launcher import LocalStack, free_port
from tests.apps.timing_app import release
from tests.chaos.harness import (
    Figures,
    Killer,
    Ledger,
    drive,
    explain_lost,
    join_at_once,
    read_until_done,
    settle,
    tally,
)
from tests.chaos.proxy import OutageProxy
from tests.crossprocess.helpers import counters, queue_depth, records, wait_until

CHAOS_TUNING = {"visibility_timeout_s": 3, "lease_ttl_s": 2.0, "max_attempts": 6, "session_grace_s": 3.0}
JOIN_RETRIES, RETRY_PAUSE_S = 20, 0.2
"""Scenarios that need particular jobs admitted join again after a 503: in fidelity mode, concurrent
admissions on the one counters item meet DynamoDB's transaction conflicts and are refused, cleanly."""


class ChaosStack:
    """The chaos app behind outage proxies (one per emulator: SQS and DynamoDB), the emulator in fidelity
    mode: model (batched, limit 2), pair (limit 2), slow (limit 1)."""

    def __init__(self, record_dir: Path) -> None:
        self.record_dir = record_dir
        self.proxies: list[OutageProxy] = []
        self.stack = LocalStack(
            "tests.apps.chaos_app:app",
            port=free_port(),
            workers={"model": 3, "pair": 2, "slow": 1},
            tuning=CHAOS_TUNING,
            extra_env={"RECORD_DIR": str(record_dir)},
            route_aws=self._route,
            fidelity=True,
        )

    def _route(self, endpoint_url: str) -> str:
        proxy = OutageProxy(int(endpoint_url.rsplit(":", 1)[1]))
        self.proxies.append(proxy)
        return f"http://127.0.0.1:{proxy.port}"

    def refuse_aws(self) -> None:
        for proxy in self.proxies:
            proxy.refuse()

    def restore_aws(self) -> None:
        for proxy in self.proxies:
            proxy.restore()

    @contextmanager
    def running(self) -> Iterator[ChaosStack]:
        self.stack.start()
        try:
            yield self
        finally:
            self.stack.stop()
            for proxy in self.proxies:
                proxy.close()


def _model_input(i: int) -> list[Any]:
    return [f"job{i}"]


def _model_output(data: list[Any]) -> Any:
    return f"ok:{data[0]}"


def kill_workers(chaos: ChaosStack, jobs: int, kills: int, every_s: float) -> Figures:
    """SIGKILL model workers mid-batch, repeatedly, while jobs flow."""
    figures, ledger, started = Figures("kill -9 workers mid-batch"), Ledger(), time.monotonic()
    killer = Killer(chaos.stack, "model", every_s, kills)
    killer.start()
    try:
        drive(chaos.stack, "model", jobs, 16, 5, _model_input, _model_output, ledger, deadline_s=240)
    finally:
        killer.done.set()
        killer.join()
    figures.workers_killed = killer.killed
    settle(chaos.stack, ["model"], ["model"], figures, 30)
    explain_lost(chaos.stack, ledger, figures)
    return tally(ledger, figures, started)


def aws_outage(chaos: ChaosStack, jobs: int, outage_s: float) -> Figures:
    """Every AWS call refused for `outage_s` while jobs flow: 503s at the front, nothing admitted lost."""
    assert len(chaos.proxies) == 2, "SQS and DynamoDB both behind a proxy"
    figures, ledger, started = Figures("AWS refuses calls"), Ledger(), time.monotonic()

    def outage() -> None:
        time.sleep(1.0)
        chaos.refuse_aws()
        time.sleep(outage_s)
        chaos.restore_aws()

    breaker = threading.Thread(target=outage)
    breaker.start()
    drive(chaos.stack, "model", jobs, 8, 4, _model_input, _model_output, ledger, deadline_s=240)
    breaker.join()
    figures.outage_s = outage_s
    settle(chaos.stack, ["model"], ["model"], figures, 30)
    explain_lost(chaos.stack, ledger, figures)
    return tally(ledger, figures, started)


def duplicate_delivery(chaos: ChaosStack, jobs: int) -> Figures:
    """Each job's message sent twice more while it waits: it still runs once and completes once."""
    figures, ledger, started = Figures("duplicate delivery"), Ledger(), time.monotonic()
    settings = chaos.stack.settings
    assert settings is not None
    sqs = chaos.stack.client("sqs")
    store = Store(settings, client=chaos.stack.client("dynamodb"))
    tags = [f"dup{secrets.token_hex(3)}-{i}" for i in range(jobs)]

    async def main() -> None:
        async with httpx.AsyncClient(base_url=chaos.stack.url, timeout=60) as http:
            session = secrets.token_hex(16)
            for tag in tags:
                body = {"data": [tag], "fn_index": 1, "session_hash": session}
                response = await http.post("/gradio_api/queue/join", json=body)
                for _ in range(JOIN_RETRIES):
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(RETRY_PAUSE_S)
                    response = await http.post("/gradio_api/queue/join", json=body)
                event_id = response.json()["event_id"]
                ledger.admitted[event_id] = tag
                # The job's own message, as the join sent it (a body that is not a job's message would be
                # dead-lettered as poison, and test nothing of the claim). Its inputs are the join's: the
                # item of a job that has already finished no longer carries them.
                job = store.get_job(session, event_id)
                assert job is not None, "an admitted job is in the store"
                body = JobMessage.of(job.model_copy(update={"data": [tag]})).model_dump_json()
                for _ in range(2):
                    sqs.send_message(QueueUrl=settings.queue_url("pair"), MessageBody=body)
            async with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
                buffer = ""
                async for chunk in stream.aiter_text():
                    buffer += chunk
                    while "\n\n" in buffer:
                        frame, buffer = buffer.split("\n\n", 1)
                        ledger.record(json.loads(frame.removeprefix("data: ")))

    asyncio.run(main())
    settle(chaos.stack, ["pair"], ["pair"], figures, 30)
    runs = [tag for r in records(chaos.record_dir, "pair") for tag in r["tags"] if tag in set(tags)]
    if len(runs) != len(set(runs)):
        figures.notes.append(f"{len(runs) - len(set(runs))} duplicated runs")
    return tally(ledger, figures, started)


def concurrency_burst(chaos: ChaosStack, jobs: int, workers: int) -> Figures:
    """A burst on `pair` (concurrency_limit=2) with `workers` worker processes: never 3 batches at once."""
    figures, ledger, started = Figures(f"limit 2 with {workers} workers"), Ledger(), time.monotonic()
    for i in range(workers - len(chaos.stack.workers_of("pair"))):
        chaos.stack.start_worker("pair", f"pair-extra-{workers}-{i}")
    since = time.time()
    drive(chaos.stack, "pair", jobs, 32, 4, lambda i: [f"p{workers}-{i}"], lambda d: d[0], ledger, deadline_s=360)
    settle(chaos.stack, ["pair"], ["pair"], figures, 30)
    batches = [r for r in records(chaos.record_dir, "pair") if r["start"] >= since]
    peak = _max_overlap(batches)
    pids = len({r["pid"] for r in batches})
    if peak > 2:
        figures.notes.append(f"peak concurrent batches {peak} (limit 2) across {pids} processes")
    figures.scenario += f": peak {peak} across {pids} processes"
    return tally(ledger, figures, started)


def _max_overlap(intervals: list[dict[str, Any]]) -> int:
    points = sorted([(r["start"], 1) for r in intervals] + [(r["end"], -1) for r in intervals], key=lambda p: p)
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    return peak


def dropped_clients(chaos: ChaosStack) -> Figures:
    """A client that drops its stream loses its waiting jobs after the grace period (its places go to
    the next); one that reconnects within the grace period gets every event it missed."""
    figures, ledger, started = Figures("clients drop / reconnect"), Ledger(), time.monotonic()
    url = chaos.stack.url
    grace = float(CHAOS_TUNING["session_grace_s"])
    holder, dropper, returner = (secrets.token_hex(16) for _ in range(3))
    blocker = _join(url, holder, 2, [-1, "blocker"])  # held until the dropped jobs are released
    dropped = [_join(url, dropper, 2, [0.1, f"dropped{i}"]) for i in range(3)]
    returning = _join(url, returner, 2, [0.1, "returning"])
    ledger.admitted.update({event_id: "" for event_id in [blocker, *dropped, returning]})
    for session in (dropper, returner):
        with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            next(stream.iter_text())  # it saw its estimations; then the client goes away
    time.sleep(1.0)
    with ThreadPoolExecutor(1) as pool:
        returned = pool.submit(_read_stream, url, returner)  # reconnects well within the grace period
        # The blocker runs until the dropped jobs have left, so none of them can start meanwhile.
        if not wait_until(lambda: counters(chaos.stack).waiting == 1, grace + 20):  # "returning" alone
            figures.notes.append(f"the dropped jobs still waited after the grace period: {counters(chaos.stack)}")
        release(chaos.record_dir, "blocker")
        back = returned.result()
    kinds = [m["msg"] for m in back if m.get("event_id") == returning]
    if kinds[:1] != ["estimation"] or kinds[-1:] != ["process_completed"]:
        figures.notes.append(f"the reconnected client missed events: {kinds}")
    for session in (holder, dropper):
        back += _read_stream(url, session)
    for message in back:
        ledger.record(message)
    ran = {r["tag"] for r in records(chaos.record_dir, "slow")}
    if ran & {f"dropped{i}" for i in range(3)} or "returning" not in ran:
        figures.notes.append(f"wrong jobs ran after the drop: {sorted(ran)}")
    settle(chaos.stack, ["slow"], ["slow"], figures, 20)
    return tally(ledger, figures, started)


def _join(url: str, session: str, fn_index: int, data: list[Any]) -> str:
    body = {"data": data, "fn_index": fn_index, "session_hash": session}
    response = httpx.post(f"{url}/gradio_api/queue/join", json=body)
    for _ in range(JOIN_RETRIES):
        if response.status_code != 503:
            break
        time.sleep(RETRY_PAUSE_S)
        response = httpx.post(f"{url}/gradio_api/queue/join", json=body)
    response.raise_for_status()
    event_id: str = response.json()["event_id"]
    return event_id


def _read_stream(url: str, session: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    messages = []
    with httpx.stream(
        "GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=timeout_s
    ) as stream:
        buffer = ""
        for chunk in stream.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                frame, buffer = buffer.split("\n\n", 1)
                messages.append(json.loads(frame.removeprefix("data: ")))
        return messages


def burst_admission(joins: int, max_size: int = 50) -> Figures:
    """`joins` concurrent joins against `max_size` with no worker running: exactly `max_size` get in,
    every other one a clean 503 with Gradio's message and a Retry-After; then a worker drains them."""
    figures, ledger, started = Figures(f"{joins} concurrent joins, max_size {max_size}"), Ledger(), time.monotonic()
    stack = LocalStack("tests.apps.burst_app:app", port=free_port(), workers=0, fidelity=True).start()
    try:
        sessions: dict[str, str] = {}

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=joins)
            async with httpx.AsyncClient(base_url=stack.url, timeout=120, limits=limits) as http:
                bodies = [
                    {"data": [f"b{i}"], "fn_index": 0, "session_hash": secrets.token_hex(16)} for i in range(joins)
                ]
                responses = await asyncio.gather(*(http.post("/gradio_api/queue/join", json=b) for b in bodies))
                for body, response in zip(bodies, responses, strict=True):
                    if response.status_code == 200:
                        sessions[response.json()["event_id"]] = str(body["session_hash"])
                return list(responses)

        for response in asyncio.run(burst()):
            _classify(response, ledger, f"Queue is full. Max size is {max_size} and size is {max_size}.")
        for event_id in sessions:
            ledger.admitted[event_id] = ""
        if len(sessions) != max_size:
            figures.notes.append(f"admitted {len(sessions)}, expected exactly {max_size}")
        stack.start_worker("quick", "quick-drain")
        for event_id, session in sessions.items():
            for message in _read_stream(stack.url, session):
                ledger.record(message)
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    break
        settle(stack, [], ["quick"], figures, 30)
    finally:
        stack.stop()
    return tally(ledger, figures, started)


FLOOD_TUNING = {"visibility_timeout_s": 5, "lease_ttl_s": 2.0, "session_grace_s": 5.0}


def join_flood(rate_per_s: float, duration_s: float, per_session: int = 10, max_sessions: int = 256) -> Figures:
    """`rate_per_s` joins per second for `duration_s` (sessions of `per_session` joins at once, at most
    `max_sessions` of them open) against a quick function, the emulator in fidelity mode: every admitted
    job completes exactly once, every refusal is a clean 503 or 429, and the counters end at zero."""
    figures, ledger, started = Figures(f"{rate_per_s:.0f} joins/s for {duration_s:.0f} s"), Ledger(), time.monotonic()
    stack = LocalStack(
        "tests.apps.flood_app:app", port=free_port(), workers={"quick": 2}, tuning=FLOOD_TUNING, fidelity=True
    ).start()
    sessions = int(rate_per_s * duration_s) // per_session
    try:

        async def flood() -> float:
            limits = httpx.Limits(max_connections=max_sessions * 2)
            async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=limits) as http:
                await http.get("/config")
                open_sessions = asyncio.Semaphore(max_sessions)

                async def one(s: int) -> None:
                    async with open_sessions:
                        inputs = [[f"f{s}-{i}"] for i in range(per_session)]
                        session = secrets.token_hex(16)
                        mine = await join_at_once(http, session, 0, inputs, ledger)
                        if mine:
                            await read_until_done(http, session, mine, ledger, lambda d: f"ok:{d[0]}")

                loop = asyncio.get_running_loop()
                begin = loop.time()
                tasks = []
                for s in range(sessions):  # open loop: the schedule does not wait for answers
                    await asyncio.sleep(max(0.0, begin + s * per_session / rate_per_s - loop.time()))
                    tasks.append(asyncio.create_task(one(s)))
                offered_s = loop.time() - begin
                drain_s = 60 + 12 * duration_s
                _, stuck = await asyncio.wait(tasks, timeout=drain_s)
                for task in stuck:  # their jobs show up as lost in the figures, with their states
                    task.cancel()
                if stuck:
                    ledger.unexpected.append(f"{len(stuck)} sessions still open {drain_s:.0f} s after the last join")
                return offered_s

        offered_s = asyncio.run(flood())
        figures.scenario += f" (offered in {offered_s:.1f} s)"
        settle(stack, [], ["quick"], figures, 30)
        explain_lost(stack, ledger, figures)
    finally:
        stack.stop()
    return tally(ledger, figures, started)


def _classify(response: httpx.Response, ledger: Ledger, full_message: str) -> None:
    if response.status_code == 200:
        return
    detail = response.json().get("detail") if response.headers.get("content-type") == "application/json" else None
    if response.status_code == 503 and isinstance(detail, str) and "retry-after" in response.headers:
        ledger.rejected += 1  # queue full, or (fidelity mode) a DynamoDB conflict or throttle
        if detail.startswith("Queue is full") and detail != full_message:
            ledger.unexpected.append(f"queue full with the wrong message: {detail}")
    else:
        ledger.unexpected.append(f"{response.status_code} {response.text[:120]}")


OVER_THE_LIMIT = "x" * (Settings.model_fields["max_payload_bytes"].default + 1_000)
"""Inputs just over the core's default `max_payload_bytes` (the chaos stack's)."""

BAD_BODIES: list[tuple[str, bytes | str, int]] = [
    ("malformed JSON", b'{"data": [', 422),
    ("not an object", b"[1, 2, 3]", 422),
    ("data not a list", b'{"data": "x", "fn_index": 0, "session_hash": "SESSION"}', 422),
    ("wrong input type", b'{"data": [1], "fn_index": 0, "session_hash": "SESSION"}', 400),
    ("bool for a number", b'{"data": [true, "x"], "fn_index": 2, "session_hash": "SESSION"}', 400),
    ("missing session_hash", b'{"data": ["x"], "fn_index": 0}', 400),
    ("short session_hash", b'{"data": ["x"], "fn_index": 0, "session_hash": "abc"}', 422),
    ("oversized session_hash", '{"data": ["x"], "fn_index": 0, "session_hash": "' + "a" * 500 + '"}', 422),
    ("session_hash with spaces", b'{"data": ["x"], "fn_index": 0, "session_hash": "a b c d e f g h i j"}', 422),
    ("unknown fn_index", b'{"data": ["x"], "fn_index": 99, "session_hash": "SESSION"}', 404),
    ("negative fn_index", b'{"data": ["x"], "fn_index": -1, "session_hash": "SESSION"}', 404),
    ("unknown api_name", b'{"data": ["x"], "api_name": "/nope", "session_hash": "SESSION"}', 404),
    ("too few inputs", b'{"data": [], "fn_index": 0, "session_hash": "SESSION"}', 400),
    ("payload over the limit", '{"data": ["' + OVER_THE_LIMIT + '"], "fn_index": 0, "session_hash": "SESSION"}', 413),
    ("control characters in session", b'{"data": ["x"], "fn_index": 0, "session_hash": "abc\\u0000defghijk"}', 422),
    ("lone surrogate", b'{"data": ["\\ud800"], "fn_index": 0, "session_hash": "SESSION"}', 400),
    (
        "lone surrogate in event_data",
        b'{"data": ["x"], "fn_index": 0, "session_hash": "SESSION", "event_data": "\\udfff"}',
        400,
    ),
    (
        "nested 150 deep",
        '{"data": [' + "[" * 149 + '"x"' + "]" * 149 + '], "fn_index": 0, "session_hash": "SESSION"}',
        400,
    ),
]


def bad_inputs(chaos: ChaosStack) -> Figures:
    """Every bad join gets its 4xx and changes nothing; odd but valid inputs round-trip unchanged."""
    figures, started = Figures("bad input"), time.monotonic()
    ledger = Ledger()
    before = counters(chaos.stack), [queue_depth(chaos.stack, a) for a in ("model", "pair", "slow")]
    for name, body, status in BAD_BODIES:
        raw = body if isinstance(body, bytes) else body.encode()
        raw = raw.replace(b"SESSION", secrets.token_hex(16).encode())
        response = httpx.post(
            f"{chaos.stack.url}/gradio_api/queue/join", content=raw, headers={"content-type": "application/json"}
        )
        detail = response.json().get("detail") if response.headers.get("content-type") == "application/json" else None
        if response.status_code != status or not detail or "Traceback" in response.text:
            ledger.unexpected.append(f"{name}: {response.status_code} {response.text[:120]}")
    figures.bad_inputs = len(BAD_BODIES)
    after = counters(chaos.stack), [queue_depth(chaos.stack, a) for a in ("model", "pair", "slow")]
    if after != before:
        figures.notes.append(f"bad input changed state: {before} -> {after}")
    odd = ["unicode ✓ 日本語 🚀", "ctl\x00\x01\x1f", "#w :max, waiting = :one", "attribute_not_exists(pk)", "{}[]\"'\\"]
    drive(chaos.stack, "pair", len(odd), 1, len(odd), lambda i: [odd[i]], lambda d: d[0], ledger, deadline_s=60)
    return tally(ledger, figures, started)
