"""FastAPI apps of the front: the API (join, cancel, config, info) and the stream (session SSE).

API Gateway routes `/gradio_api/queue/data`, `/gradio_api/heartbeat/*` and the streams of Gradio's curl
API (`GET /gradio_api/call/<api_name>/<event_id>`) to the stream app and the rest to the API app; locally
`local_app` serves both on one port with the same routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from surge import protocol, sse
from surge.errors import NotFound, SurgeError, TooManyRequests
from surge.eta import TimedCache
from surge.file_routes import UPLOAD_PATH, files_router, upload_body_limit
from surge.gradio_page import ROOT_PLACEHOLDER, root_url
from surge.guard import BodyLimit, RateLimiter, caller_of, client_address
from surge.models import (
    SESSION_HASH_PATTERN,
    CallBody,
    Caller,
    CancelBody,
    EventId,
    Job,
    JoinBody,
    ResetBody,
    RunBody,
    Success,
)
from surge.pages import pages_router
from surge.service import FrontService
from surge.session import PollPolicy, SessionHub, SessionStream

T = TypeVar("T")

PREFIX = "/gradio_api"
JOIN_PATH = f"{PREFIX}/queue/join"
CALL_SESSION = "call-"
"""A call through Gradio's curl API is a session of its own, `call-<event id>`: the event id it answers is
what the `GET` of the call's stream names (128 random bits, like a session hash)."""
QUEUE_STATUS_FRESH_S = 1.0
"""How long the front reuses its counters read for `/gradio_api/queue/status`."""
CANCEL_TOLD_WAIT_S = 3.0
"""How long a cancel's answer waits for the session's stream here to send the cancelled completion."""
CALL_ID_PATTERN = r"^[0-9a-f]{32}$"
RUN_SESSION = "run-"
"""A direct call (`POST /gradio_api/run/<api_name>`) is a session of its own too, `run-<128 random bits>`."""
DIRECT_CALLS_CLOSED = (
    "This API endpoint does not accept direct HTTP POST requests. Please join the queue to use this API."
)
"""Gradio's answer to a direct call of a queued event when the app says `queue(api_open=False)`."""
RUN_EXTRAS: dict[str, Any] = {"render_config": None, "changed_state_ids": [], "used_cache": None}
"""Keys of Gradio's direct-call answer that a queued completion does not carry."""
ANSWERS = ("process_generating", "process_completed")
logger = logging.getLogger("surge.front")


def _surge_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, SurgeError)
    headers = {}
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=headers)


def _internal_error(request: Request, error: Exception) -> JSONResponse:
    """Anything unexpected: log it with its traceback, tell the client nothing internal."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "Internal error; please try again."}, status_code=500)


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422, whose errors echo each bad input: one JSON cannot carry (`NaN`, which Python's parser
    takes; a lone surrogate) made that answer fail with a 500; such errors go without their input."""
    assert isinstance(error, RequestValidationError)
    errors = jsonable_encoder(error.errors())
    try:
        json.dumps(errors, allow_nan=False, ensure_ascii=False).encode()
    except ValueError:  # NaN, or a lone surrogate (UnicodeEncodeError)
        errors = [{key: value for key, value in e.items() if key not in ("input", "ctx")} for e in errors]
    return JSONResponse({"detail": errors}, status_code=422)


def _base_app(service: FrontService) -> FastAPI:
    settings = service.settings
    app = FastAPI(title=service.app.title, docs_url=None, redoc_url=None)

    def size_thread_pool() -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.thread_pool_size

    app.router.on_startup.append(size_thread_pool)
    app.add_exception_handler(SurgeError, _surge_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _internal_error)
    origins = [o.strip() for o in settings.cors_allow_origins.split(",") if o.strip()]
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"], allow_headers=["*"])
    # JSON escapes and the other fields of a join body cost a little over the inputs' own limit.
    upload_limit = upload_body_limit(service)
    paths = {UPLOAD_PATH: upload_limit} if upload_limit is not None else {}
    why = f"MAX_PAYLOAD_BYTES, {settings.max_payload_bytes}, for the inputs and 4096 for the rest of the request"
    app.add_middleware(BodyLimit, max_bytes=settings.max_payload_bytes + 4096, paths=paths, why=why)
    return app


def api_router(service: FrontService, hub: SessionHub | None = None) -> APIRouter:
    """`hub`: the streams of this process (the local front), told of each join and cancel at once."""
    router = APIRouter()
    limiter = RateLimiter(service.settings.join_rate_per_s, service.settings.join_burst)

    async def rate_limited(request: Request) -> None:
        # async: a check of a few microseconds runs on the event loop, not in a thread of its own ahead
        # of the join's (FastAPI runs a plain `def` dependency in the thread pool).
        retry_after = limiter.retry_after_s(client_address(request.scope))
        if retry_after:
            raise TooManyRequests(retry_after)

    config_text = json.dumps(service.config)

    @router.get("/config")
    async def config(request: Request) -> Response:
        # A Gradio app's config names its root URL and its files' URLs under it, which only the request tells.
        root = json.dumps(root_url(request, "/config"))[1:-1]
        return Response(config_text.replace(ROOT_PLACEHOLDER, root), media_type="application/json")

    info_text = json.dumps(service.info)

    @router.get(f"{PREFIX}/info")
    async def info(request: Request) -> Response:
        # A Gradio app's code snippets name the app's URL, which only the request tells.
        root = json.dumps(root_url(request, f"{PREFIX}/info"))[1:-1]
        return Response(info_text.replace(ROOT_PLACEHOLDER, root), media_type="application/json")

    turns = JoinTurns(service.settings.join_threads)

    @router.post(JOIN_PATH, dependencies=[Depends(rate_limited)])
    async def join(body: JoinBody, request: Request) -> EventId:
        job = await _join(service, hub, turns, body, caller_of(request, JOIN_PATH))
        return EventId(event_id=job.job_id)

    _add_curl_routes(router, service, hub, turns, rate_limited)
    _add_run_routes(router, service, hub, turns, rate_limited)

    counted = TimedCache(QUEUE_STATUS_FRESH_S)

    @router.get(f"{PREFIX}/queue/status")
    def queue_status() -> dict[str, Any]:
        """Gradio's queue status: how many jobs wait, app-wide (one counters read a second at most,
        however many ask)."""
        counters = counted.get("counters", lambda: service.store.counters(consistent=False))
        return protocol.queue_status(counters.waiting)

    @router.post(f"{PREFIX}/cancel")
    async def cancel(body: CancelBody) -> Success:
        return Success(success=await _cancel(service, hub, body))

    @router.post(f"{PREFIX}/reset")
    def reset(body: ResetBody) -> Success:
        return Success()

    return router


async def _cancel(service: FrontService, hub: SessionHub | None, body: CancelBody) -> bool:
    """As Gradio's: answered once the session's stream has sent the cancelled completion (here, within
    `CANCEL_TOLD_WAIT_S`). Gradio's page marks the event complete and drops it when this answer comes;
    a completion arriving after that lands on a dropped event, which the page marks "Error" over its
    outputs."""
    if hub is None:
        return await anyio.to_thread.run_sync(service.cancel, body)
    with hub.awaiting_completion(body.event_id) as told:
        success = await anyio.to_thread.run_sync(service.cancel, body)
        hub.poke(body.session_hash)
        if success and body.session_hash in hub.open:
            with anyio.move_on_after(CANCEL_TOLD_WAIT_S):
                await told.wait()
    return success


class JoinTurns:
    """Joins run on threads of their own, at most `size` at once (`Settings.join_threads`); a join past
    that waits for a turn on the event loop, holding a socket and no thread. Streams and every other
    route keep the process's own pool (`Settings.thread_pool_size`), so a crowd of joins cannot starve
    the reads that deliver finished jobs."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()  # one limiter per loop: a test client may run several in turn
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = anyio.CapacityLimiter(self.size)
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)


def _event_name(config: dict[str, Any], fn_index: int) -> str | None:
    for dependency in config.get("dependencies", []):
        if dependency.get("id") == fn_index:
            return str(dependency.get("api_name") or "") or None
    return None


def _add_curl_routes(
    router: APIRouter,
    service: FrontService,
    hub: SessionHub | None,
    turns: JoinTurns,
    rate_limited: Callable[[Request], Awaitable[None]],
) -> None:
    """Gradio's curl API: the inputs in order, or by name as Gradio 6's "Use via API" page shows it."""

    @router.post(PREFIX + "/call/{api_name}", dependencies=[Depends(rate_limited)])
    async def call(api_name: str, body: CallBody, request: Request) -> EventId:
        return await _join_call(service, hub, turns, api_name, body, request)

    @router.post(PREFIX + "/call/v2/{api_name}", dependencies=[Depends(rate_limited)])
    async def call_named(api_name: str, body: dict[str, Any], request: Request) -> EventId:
        data = _inputs_by_name(service, api_name, body)
        return await _join_call(service, hub, turns, api_name, CallBody(data=data), request)


def _add_run_routes(
    router: APIRouter,
    service: FrontService,
    hub: SessionHub | None,
    turns: JoinTurns,
    rate_limited: Callable[[Request], Awaitable[None]],
) -> None:
    """Gradio's direct call, `POST /gradio_api/run/<api_name>` (and its older spelling `/api/<api_name>`):
    the answer is the call's output. Gradio runs it in the server process, skipping the queue; here every
    event runs on a worker, so the call joins the queue in a session of its own and waits, within
    `Settings.run_wait_s`, for its completion."""
    waiting = hub or session_hub(service)

    @router.post(PREFIX + "/run/{api_name:path}", dependencies=[Depends(rate_limited)])
    @router.post(PREFIX + "/api/{api_name:path}", dependencies=[Depends(rate_limited)], include_in_schema=False)
    async def run(api_name: str, body: RunBody, request: Request) -> JSONResponse:
        if not service.app.api_open and not ({api_name, body.fn_index} & service.app.unqueued):
            raise NotFound(DIRECT_CALLS_CLOSED)
        if body.fn_index is not None:
            api_name = _event_name(service.config, body.fn_index) or api_name
        session_hash = RUN_SESSION + secrets.token_hex(16)
        joined = JoinBody(
            data=body.data,
            api_name=api_name,
            fn_index=body.fn_index,
            session_hash=session_hash,
            event_data=body.event_data,
        )
        job = await _join(service, hub, turns, joined, caller_of(request, request.url.path))
        return await _run_answer(service, waiting, job)


async def _run_answer(service: FrontService, hub: SessionHub, job: Job) -> JSONResponse:
    """The direct call's answer, as Gradio's: the output of the completion (HTTP 500 for an error), or of
    a generator's first step (`is_generating: true`; Gradio does not go on with it, so the job is
    cancelled); past `run_wait_s`, a 504 and the job cancelled, for no worker to compute an answer
    nobody reads. The call's stream is then read to its end after the answer is sent, so that it
    forgets the job as any stream forgets what it delivered."""
    messages = SessionStream(hub, job.session_hash, PollPolicy(), joined_again=False).messages()
    answer: dict[str, Any] | None = None
    with anyio.move_on_after(service.settings.run_wait_s):
        async for message in messages:
            if message.get("event_id") == job.job_id and message.get("msg") in ANSWERS:
                answer = message
                break
    if answer is None or answer["msg"] == "process_generating":
        await _cancel_run(service, job)
    after = BackgroundTask(_read_to_end, messages, service.settings.run_wait_s)
    if answer is None:
        waited = service.settings.run_wait_s
        error = (
            f"{job.api_name!r} did not finish within {waited:g} s, the longest a direct call waits here; "
            "the call was cancelled. Join the queue instead (gradio_client, or POST /gradio_api/call/"
            f"{job.api_name} and read its stream), which waits as long as the job takes."
        )
        return JSONResponse({"error": error}, status_code=504, background=after)
    return JSONResponse(_run_output(answer), status_code=200 if answer.get("success") else 500, background=after)


async def _read_to_end(messages: AsyncGenerator[dict[str, Any], None], limit_s: float) -> None:
    try:
        with anyio.move_on_after(limit_s):
            async for _ in messages:
                pass
    finally:
        await messages.aclose()


def _run_output(message: dict[str, Any]) -> Any:
    output = message.get("output")
    if not message.get("success") or not isinstance(output, dict):
        return output
    return {"duration": None, "average_duration": None, **RUN_EXTRAS, **output}


async def _cancel_run(service: FrontService, job: Job) -> None:
    """No stream but the call's own waits for this completion: no need to wait for it to be sent."""
    with contextlib.suppress(SurgeError):
        await _cancel(service, None, CancelBody(session_hash=job.session_hash, event_id=job.job_id))


def _inputs_by_name(service: FrontService, api_name: str, named: dict[str, Any]) -> list[Any]:
    endpoint = service.info["named_endpoints"].get(f"/{api_name}")
    if endpoint is None:
        raise NotFound(f"No function named {api_name!r}.")
    return protocol.named_inputs(endpoint["parameters"], named)


async def _join_call(
    service: FrontService, hub: SessionHub | None, turns: JoinTurns, api_name: str, body: CallBody, request: Request
) -> EventId:
    """Gradio's curl API (the page's "Use via API", bash): a join in a session of its own, whose stream
    is `GET /gradio_api/call/<api_name>/<event_id>`."""
    try:
        data = _without_state(service.app.get(api_name).inputs, body.data)
    except KeyError:
        if service.page_event(api_name) is None:
            raise NotFound(f"No function named {api_name!r}.") from None
        data = body.data  # a page event kept out of the API docs, by its name as Gradio takes it
    token = secrets.token_hex(16)
    session_hash = CALL_SESSION + token
    joined = JoinBody(data=data, api_name=api_name, session_hash=session_hash)
    caller = caller_of(request, f"{PREFIX}/call/{api_name}").model_copy(update={"simple_format": True})
    await _join(service, hub, turns, joined, caller)
    return EventId(event_id=token)


async def _join(service: FrontService, hub: SessionHub | None, turns: JoinTurns, body: JoinBody, caller: Caller) -> Job:
    """A join; with `hub` (the local front), the session's streams here stay open from its arrival, its
    wait for a turn included, and its answer waits for a reader of the session that was just sent
    `close_stream` to hang up (`SessionHub.after_hang_up`)."""
    session_hash = body.session_hash or ""
    with hub.joining(session_hash) if hub else contextlib.nullcontext():
        job = await turns.run(service.join, body, caller)
    if hub:
        hub.committed(job.job_id)
        await hub.after_hang_up(session_hash)
    return job


def _without_state(inputs: list[str], data: list[Any]) -> list[Any]:
    """Inputs as Gradio's curl API takes them: without the `gr.State` ones (the session's own), which are
    filled in as null, as Gradio fills them in."""
    stateful = [i for i, component in enumerate(inputs) if component == "state"]
    if not stateful or len(data) != len(inputs) - len(stateful):
        return data
    given = iter(data)
    return [None if i in stateful else next(given) for i in range(len(inputs))]


def session_hub(service: FrontService) -> SessionHub:
    return SessionHub(service.app, service.settings, service.store, service.estimator)


def stream_router(hub: SessionHub, poll: PollPolicy) -> APIRouter:
    router = APIRouter()
    heartbeat_s = hub.settings.heartbeat_interval_s

    @router.get(f"{PREFIX}/queue/data")
    async def queue_data(session_hash: str = Query(pattern=SESSION_HASH_PATTERN)) -> EventSourceResponse:
        return sse.event_stream(SessionStream(hub, session_hash, poll).messages(), heartbeat_s)

    @router.get(PREFIX + "/call/v2/{api_name}/{event_id}")
    @router.get(PREFIX + "/call/{api_name}/{event_id}")
    async def call_data(api_name: str, event_id: str = Path(pattern=CALL_ID_PATTERN)) -> EventSourceResponse:
        stream = SessionStream(hub, CALL_SESSION + event_id, poll, joined_again=False)
        return sse.simple_stream(_or_unknown(stream), heartbeat_s)

    @router.get(PREFIX + "/heartbeat/{session_hash}")
    async def heartbeat(session_hash: str) -> EventSourceResponse:
        return sse.event_stream(_alive_for(hub.settings.stream_max_s), heartbeat_s, heartbeat="ALIVE")

    return router


async def _or_unknown(stream: SessionStream) -> AsyncIterator[dict[str, Any]]:
    """A call's messages; a stream that found no such call says so at once, as Gradio's."""
    async for message in stream.messages():
        if message.get("msg") == "close_stream" and not stream.view.jobs:
            yield protocol.unknown_call()
        yield message


async def _alive_for(max_s: float) -> Any:
    """Gradio's heartbeat stream, ended at `max_s` (the client reconnects) so that on Lambda it never
    runs into the function timeout, billed to the end and counted as an error. The first `ALIVE` goes at
    once, as Gradio's."""
    yield "ALIVE"
    await anyio.sleep(max_s)
    yield "ALIVE"


def create_api_app(service: FrontService) -> FastAPI:
    app = _base_app(service)
    app.include_router(api_router(service))
    app.include_router(files_router(service))
    app.include_router(pages_router(service))
    return app


def create_stream_app(service: FrontService, poll: PollPolicy | None = None) -> FastAPI:
    app = _base_app(service)
    app.include_router(stream_router(session_hub(service), poll or PollPolicy()))
    return app


def create_local_app(service: FrontService, poll: PollPolicy | None = None) -> FastAPI:
    """Both apps on one port, routed as API Gateway routes them (for `make run` and tests)."""
    app = _base_app(service)
    hub = session_hub(service)
    hub.serves_joins = True
    app.include_router(api_router(service, hub))
    app.include_router(stream_router(hub, poll or PollPolicy()))
    app.include_router(files_router(service))
    app.include_router(pages_router(service))
    return app
