"""Gradio apps on Surge, unchanged: a `gr.Blocks` (`gr.Interface`, `gr.ChatInterface`) becomes an `App`.

Each public event becomes a queued `Function` with the event's own settings, and the page's own events
share one more, the `page_events` lane; a worker runs each through Gradio's `Blocks.process_api`
(preprocess → function → postprocess), so components behave as in Gradio. A session's `gr.State` values are
kept between its calls (`surge.store.page_state`). Files go through S3 (`surge.store.files`): inputs name
uploaded files, outputs are stored and named. What cannot work when calls of one session land on any
worker is refused at start, naming the event.
Only this module imports gradio, and only when the app is a Gradio app (its page, too, is rendered here and
served by `surge.gradio_page`, which imports no gradio).
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import hashlib
import inspect
import json
import logging
import os
import pickle
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import gradio as gr
import httpx
import orjson
import pydantic
import safehttpx
from fastapi.encoders import jsonable_encoder
from gradio import processing_utils, route_utils
from gradio import utils as gradio_utils
from gradio.block_function import BlockFunction
from gradio.data_classes import ListFiles
from gradio.events import EventData
from gradio.exceptions import Error as GradioError
from gradio.routes import ORJSONResponse, templates
from gradio.state_holder import SessionState
from gradio_client import utils as client_utils
from gradio_client.utils import encode_file_path, is_file_obj, is_http_url_like, traverse
from starlette.requests import Request as StarletteRequest

from surge.application import CALLS, App, Call, Function, PageEvent, Parameter, Progress, file_size_limit
from surge.errors import Error
from surge.gradio_page import ROOT_PLACEHOLDER, GradioPage
from surge.held_launch import LAUNCH_ARGS
from surge.models import Caller
from surge.settings import Settings
from surge.store.files import FileStore, is_name
from surge.store.page_state import PageStateStore

logger = logging.getLogger("surge.gradio")

PROGRESS_ARG = "surge_progress"
PAGE_EVENTS = "page_events"
"""The lane of the page's own events, those Gradio's API does not list (a ChatInterface's chat box, an
Interface's examples and Flag, a Blocks' private steps): one queue, served beside the app's first function
by its workers (`App.host_of`)."""
API_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,60}$")
"""Each served event has an SQS queue named after it: letters, digits, `-`, `_`, at most 60 here."""
FOOTER_LINKS = ["api", "gradio", "settings"]
"""launch()'s default footer, less the run history page Surge does not serve."""

NOT_UPLOADED = "Input files must first be uploaded to this app (POST /gradio_api/upload)."


class Unsupported(ValueError):
    """The Gradio app uses something Surge cannot honour; the message names the event and the feature."""


class _ProgressBridge:
    """Stands in for Gradio's queue inside a worker: `gr.Progress` reports reach the job's Surge progress."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        """Gradio's own queue object, which holds the app's `queue()` settings."""
        self.lock = threading.Lock()
        self.sinks: dict[str, Progress] = {}
        self.notices: dict[str, list[Call]] = {}
        """Gradio event id → the jobs of the call, whose visitors get its `gr.Info`/`gr.Warning`."""

    def set_progress(self, event_id: str, iterables: list[Any] | None) -> None:
        with self.lock:
            sink = self.sinks.get(event_id)
        if sink is None or not iterables:
            return
        last = iterables[-1]
        if last.index is not None and last.length is not None:
            sink((last.index, last.length), desc=last.desc, unit=last.unit or "steps")
        else:
            sink(last.progress, desc=last.desc, unit=last.unit or "steps")

    def log_message(
        self, event_id: str, log: str, title: str, level: str, duration: float | None = 10, visible: bool = True
    ) -> None:
        with self.lock:
            calls = self.notices.get(event_id, [])
        for call in calls:
            if call.notify is not None:
                call.notify(log, level, title, duration, visible)
        if not calls:
            logger.info("gr.%s from the app: %s", level.capitalize(), log)


class _Gate:
    """An event's concurrency limit within one worker. The worker asks `reserve()` before it claims a job
    (and parks the job, unclaimed, when there is no room); the call then takes the place reserved, and a
    job that is not run after all (its claim was refused) gives its place back. A reservation neither
    taken nor given back within `RESERVED_FOR_S` lapses by itself."""

    RESERVED_FOR_S = 10.0

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self.reserved: list[float] = []
        self.changed = threading.Condition()

    def _lapse(self) -> None:
        now = time.monotonic()
        self.reserved = [at for at in self.reserved if now - at < self.RESERVED_FOR_S]

    def reserve(self) -> Callable[[], None] | None:
        """A place for one call, and how to give it back if the call does not happen; None when full."""
        with self.changed:
            self._lapse()
            if self.running + len(self.reserved) >= self.limit:
                return None
            self.reserved.append(time.monotonic())
            return self._give_back

    def _give_back(self) -> None:
        with self.changed:
            if self.reserved:
                self.reserved.pop()
            self.changed.notify()

    def __enter__(self) -> None:
        with self.changed:
            self._lapse()
            if self.reserved:
                self.reserved.pop(0)
            else:  # not reserved (called outside a worker's loop): wait for room
                self.changed.wait_for(lambda: self.running + len(self.reserved) < self.limit)
            self.running += 1

    def __exit__(self, *_: object) -> None:
        with self.changed:
            self.running -= 1
            self.changed.notify()


def _with_snippets(info: dict[str, Any]) -> dict[str, Any]:
    """Each endpoint's code snippets (Python, JavaScript, bash, cli), as Gradio's `/gradio_api/info` adds
    them: the page's "Use via API" panel shows them, and is blank without them. Gradio writes the app's URL
    in per request; here it is `ROOT_PLACEHOLDER`, which the front fills in (`surge.front`)."""
    from gradio_client.snippet import generate_code_snippets
    from hf_gradio.cli import generate_cli_snippet

    named = info.get("named_endpoints", {})
    cli = generate_cli_snippet(named)
    for name, endpoint in named.items():
        snippets = generate_code_snippets(name, endpoint, ROOT_PLACEHOLDER, api_prefix="/gradio_api/")
        endpoint["code_snippets"] = {**snippets, "cli": cli[name].replace("{space_id}", ROOT_PLACEHOLDER)}
    return info


def _listed(paths: str | None) -> list[str]:
    """A comma-separated list of folders, as Gradio reads `GRADIO_ALLOWED_PATHS` and `GRADIO_BLOCKED_PATHS`."""
    return [item.strip() for item in (paths or "").split(",") if item.strip()]


def _unlimited() -> None:
    """The place of a step no limit holds: nothing to give back."""


class GradioApp(App):
    """An `App` whose functions run a `gr.Blocks`'s events; `/config` and `/info` are Gradio's own."""

    def __init__(self, blocks: gr.Blocks, settings: Settings | None = None) -> None:
        installed = blocks._queue
        self.progress = installed if isinstance(installed, _ProgressBridge) else _ProgressBridge(installed)
        blocks._queue = self.progress  # type: ignore[assignment]
        queue = self.progress.queue
        launched: dict[str, Any] = getattr(blocks, LAUNCH_ARGS, {}) or _mounted_with(blocks)
        if launched.get("auth") or launched.get("auth_dependency"):
            raise Unsupported(
                "launch(auth=...) asks for Gradio's login, which Surge does not serve (the app would be open to "
                "anyone): remove it and put an authorizer in front of the API."
            )
        super().__init__(
            title=str(blocks.title or "Gradio"),
            max_size=queue.max_size,
            default_concurrency_limit=queue.default_concurrency_limit,
            max_threads=launched.get("max_threads", blocks.max_threads),
            # launch()'s default: only gr.Error messages reach the client (gr.Blocks() itself says True).
            show_error=bool(launched.get("show_error", False)),
        )
        self.blocks = blocks
        blocks.show_error = self.show_error  # as launch() sets it: /config says what Gradio's says
        if launched.get("i18n") is not None:
            # launch(i18n=gr.I18n(...)): the page's translations of the app's own strings, in /config.
            blocks.i18n_instance = launched["i18n"]
        # Gradio lets an output file through only from the app's folder, the temp folder or launch's
        # `allowed_paths`, never from `blocked_paths` (`processing_utils._check_allowed`), and checks only
        # once the app has launched: a worker never launches it, and without this a function could hand
        # its caller any file of the worker's disk.
        blocks.allowed_paths = list(launched.get("allowed_paths") or _listed(os.environ.get("GRADIO_ALLOWED_PATHS")))
        blocks.blocked_paths = list(launched.get("blocked_paths") or _listed(os.environ.get("GRADIO_BLOCKED_PATHS")))
        blocks.has_launched = True
        # The page's footer (Use via API, Built with Gradio, Settings), set by launch(), which never runs
        # here: without it /config says no footer. "runs" (the run history page) is not served.
        footer = launched.get("footer_links")
        blocks.footer_links = [link for link in (footer if footer is not None else FOOTER_LINKS) if link != "runs"]
        # Gradio draws `app_id` at random per process; the page reloads when it changes, and every front
        # process must give the same one.
        shape = repr([(i, fn.api_name) for i, fn in blocks.fns.items()]) + str(blocks.title)
        blocks.app_id = int.from_bytes(hashlib.sha256(shape.encode()).digest()[:7])
        launch_limit = gradio_utils._parse_file_size(launched.get("max_file_size"))
        app_limit = launch_limit or getattr(blocks, "max_file_size", None)
        self.max_file_size = file_size_limit(
            app_limit or (settings.max_file_size_bytes if settings else None), settings
        )
        self.files = FileStore(settings.files_bucket_name) if settings and settings.files_bucket_name else None
        self._stored = _StoredCopies()
        self._page_files: dict[str, Path] | None = None
        if settings is not None and settings.max_threads:
            self.max_threads = settings.max_threads
        self.states = PageStateStore(settings) if settings is not None else None
        """Where each session's `gr.State` values are kept between its calls (None: every call starts
        from the initial values)."""
        self._shaped = _shaped_components(blocks)
        public, page, skipped = _served(blocks)
        if not public:
            unserved = "; ".join(f"{_label(fn)} {why}" for fn, why in skipped)
            raise Unsupported(
                "This Gradio app has no public event with a Python function to serve"
                + (f" ({unserved})" if unserved else ".")
            )
        self.functions = [self._function(fn_id, block_fn) for fn_id, block_fn in public]
        if page:
            self.functions.append(self._lane(dict(page)))
        self.notes = _notes(blocks, public, skipped) + _launch_notes(launched)
        left_out = {
            id(block_fn): f"Surge does not serve this part of the page ({_label(block_fn)}): it {why}"
            for block_fn, why in skipped
        }
        self.unserved = {fn_id: left_out[id(fn)] for fn_id, fn in blocks.fns.items() if id(fn) in left_out}
        self.api_open = bool(blocks.api_open)
        self.unqueued = {
            key for fn_id, fn in blocks.fns.items() if fn.queue is False for key in (fn_id, fn.api_name) if key
        }

    def unlimited_batches_at_once(self) -> int:
        """Gradio's process runs up to `max_threads` calls of an event with no concurrency limit at once:
        a worker of such an event does too (one long poll among its loops, `Worker.receiving`)."""
        return self.max_threads

    # ---- what the front advertises -----------------------------------------------------------------

    def wire_config(self) -> dict[str, Any]:
        _prepare_page(self.blocks)  # /config says the theme whether or not the page was built first
        config = _as_json(self.blocks.get_config_file())
        config["max_file_size"] = self.max_file_size
        served = {i for f in self.functions for i in (f.events if f.events is not None else [f.fn_index])}
        for dependency in config["dependencies"]:
            if dependency["id"] in served:
                # The page posts an event that skips Gradio's queue (`queue=False`) to `/run/`, for the
                # server process to run at once; here every event runs on a worker, through the queue.
                dependency["queue"] = True
        # As Gradio's `/config` route answers: the app's root URL, and the components' file URLs under it
        # (a gallery's `select` gives the function the URL its page was sent); the front fills in the
        # request's root where `ROOT_PLACEHOLDER` stands.
        config["root"], config["username"] = ROOT_PLACEHOLDER, None
        rooted: dict[str, Any] = processing_utils.add_root_url(config, ROOT_PLACEHOLDER, None)
        return rooted

    def wire_info(self) -> dict[str, Any]:
        """`/gradio_api/info` as Gradio's route answers it: FastAPI's own encoding (a translated label is
        `{"key": ..., "_type": "translation_metadata"}`, not the page's `__i18n__` string)."""
        return _with_snippets(_as_json(jsonable_encoder(self.blocks.get_api_info())))

    def page_files(self) -> dict[str, Path]:
        if self._page_files is None:
            found: dict[str, Path] = {}

            def note(file: dict[str, Any]) -> dict[str, Any]:
                path = file.get("path")
                if (
                    isinstance(path, str)
                    and not is_name(path)
                    and (self._in_cache(Path(path)) or _in_gradio(Path(path)))
                    and Path(path).is_file()
                ):
                    found[path] = Path(path)
                return file

            _walk_files(self.wire_config()["components"], note)
            self._page_files = found
        return self._page_files

    def gradio_page(self) -> GradioPage:
        """Gradio's page for this app: the installed frontend's `index.html` rendered through gradio's own
        template with the app's config and info (the root URL left to each request), and its theme."""
        _prepare_page(self.blocks)
        template = templates.get_template("frontend/index.html")
        config = {**self.wire_config(), "root": ROOT_PLACEHOLDER}
        # The page's copy of the API info is encoded as Gradio's template encodes it (`toorjson`).
        info = _with_snippets(_as_json(self.blocks.get_api_info()))
        html = template.render({"base_url": "./", "config": config, "gradio_api_info": info})
        # A multipage app's other pages (`with demo.route("Second", "/second")`), each with the config and API
        # info of its own components and events, as Gradio's server renders `/second`.
        pages = {
            route: template.render(
                {
                    "base_url": "./",
                    "config": _page_config(config, route),
                    "gradio_api_info": _with_snippets(_as_json(self.blocks.get_api_info(page=route))),
                }
            )
            for route, *_ in self.blocks.pages
            if route
        }
        return GradioPage(
            index_html=html,
            theme_css=self.blocks.theme_css,
            assets=Path(route_utils.BUILD_PATH_LIB),
            static=Path(route_utils.STATIC_PATH_LIB),
            pages=pages,
        )

    # ---- what a worker runs ------------------------------------------------------------------------

    def _function(self, fn_id: int, block_fn: BlockFunction) -> Function:
        api_name = str(block_fn.api_name)
        concurrency_id = block_fn.concurrency_id
        if concurrency_id.isdigit():
            # Gradio's default id is `str(id(fn))`, which differs in every process: each event is its own group.
            concurrency_id = api_name
        return Function(
            fn=self._runner(block_fn),
            fn_index=fn_id,
            api_name=api_name,
            inputs=[block.get_block_name() for block in block_fn.inputs],
            outputs=[block.get_block_name() for block in block_fn.outputs],
            batch=block_fn.batch,
            max_batch_size=block_fn.max_batch_size,
            # Gradio runs a `queue=False` event at once, under no limit; here it goes through the queue.
            concurrency_limit=None if block_fn.queue is False else block_fn.concurrency_limit,
            concurrency_id=concurrency_id,
            batch_wait_ms=0,
            # Gradio reads `time_limit` only for `.stream()` events (refused here): other events run unbounded.
            time_limit_s=None,
            eta_hint_s=None,
            parameters=[
                Parameter(name=f"input {i}", component=f"gradio.{block.get_block_name()}", has_default=False)
                for i, block in enumerate(block_fn.inputs)
            ],
            progress_arg=None if block_fn.batch else PROGRESS_ARG,
            chunk_diff=_gradio_diff,
            split_failed_batch=False,
        )

    def _lane(self, page: dict[int, BlockFunction]) -> Function:
        """One function that runs the page's own events: a job carries its event's `fn_index`. The lane
        has no limit of its own, as Gradio runs most of them (`queue=False`) at once; an event Gradio
        queues keeps its `concurrency_limit` within each worker of the lane, where a job whose limit is
        full is parked by the worker (`Function.reserve` reserves a place) rather than holding a loop."""
        gates: dict[str, _Gate] = {}
        for block_fn in page.values():
            limit = (
                self.default_concurrency_limit
                if block_fn.concurrency_limit == "default"
                else block_fn.concurrency_limit
            )
            if block_fn.queue is not False and isinstance(limit, int):
                gates.setdefault(block_fn.concurrency_id, _Gate(limit))

        def gate(block_fn: BlockFunction) -> AbstractContextManager[Any]:
            return gates.get(block_fn.concurrency_id) or nullcontext()

        def reserve(data: list[Any]) -> Callable[[], None] | None:
            block_fn = page.get(data[0]) if data else None
            found = gates.get(block_fn.concurrency_id) if block_fn is not None else None
            return _unlimited if found is None else found.reserve()

        def stream(block_fn: BlockFunction, inputs: list[Any], progress: Progress | None) -> Iterator[list[Any]]:
            with gate(block_fn), self._call(progress, block_fn) as run:
                result = run(block_fn, inputs, None)
                while result["is_generating"]:
                    yield list(result["data"])
                    result = run(block_fn, [], result["iterator"])

        def run_event(fn_index: int, *inputs: Any, surge_progress: Progress | None = None) -> Any:
            block_fn = page[fn_index]
            if _is_generator(block_fn.fn):
                return stream(block_fn, list(inputs), surge_progress)
            with gate(block_fn), self._call(surge_progress, block_fn) as run:
                if block_fn.batch:  # a batch of one
                    return [column[0] for column in run(block_fn, [[value] for value in inputs], None)["data"]]
                return list(run(block_fn, list(inputs), None)["data"])

        return Function(
            fn=run_event,
            fn_index=-1,
            api_name=PAGE_EVENTS,
            inputs=[],
            outputs=[],
            batch=False,
            max_batch_size=1,
            concurrency_limit=None,
            concurrency_id=PAGE_EVENTS,
            batch_wait_ms=0,
            time_limit_s=None,
            eta_hint_s=None,
            progress_arg=PROGRESS_ARG,
            chunk_diff=_gradio_diff,
            reserve=reserve,
            events={
                i: PageEvent(len(block_fn.inputs), len(block_fn.outputs), _is_generator(block_fn.fn))
                for i, block_fn in page.items()
            },
        )

    def _runner(self, block_fn: BlockFunction) -> Callable[..., Any]:
        one = len(block_fn.outputs) == 1

        def shape(data: list[Any]) -> Any:
            return data[0] if one else list(data)

        if block_fn.batch:

            def run_batch(*columns: list[Any]) -> list[list[Any]]:
                with self._call(None, block_fn) as run:
                    return [list(column) for column in run(block_fn, [list(c) for c in columns], None)["data"]]

            return run_batch

        if _is_generator(block_fn.fn):

            def run_stream(*inputs: Any, surge_progress: Progress | None = None) -> Iterator[Any]:
                with self._call(surge_progress, block_fn) as run:
                    result = run(block_fn, list(inputs), None)
                    while result["is_generating"]:
                        yield shape(result["data"])
                        result = run(block_fn, [], result["iterator"])

            return run_stream

        def run_one(*inputs: Any, surge_progress: Progress | None = None) -> Any:
            with self._call(surge_progress, block_fn) as run:
                return shape(run(block_fn, list(inputs), None)["data"])

        return run_one

    @contextmanager
    def _call(
        self, progress: Progress | None, block_fn: BlockFunction
    ) -> Iterator[Callable[[BlockFunction, list[Any], Any], dict[str, Any]]]:
        """One call of an event: its own event loop, input folder, and Gradio session state: the session's
        kept `gr.State` values when the event reads or writes one (its changed ones are kept after)."""
        event_id = secrets.token_hex(16)
        started = time.time()
        brought: dict[str, str] = {}
        """The files this call's states brought back, local path → their name in S3."""
        calls = list(CALLS.get())
        requests = [_request(call) for call in calls]
        request: gr.Request | list[gr.Request] | None = None
        if requests:
            request = requests if len(requests) > 1 else requests[0]
        first = calls[0].caller if calls and calls[0].caller else Caller()
        # As Gradio's queue: one root URL for a batch's files, and its event data, the first job's (as its
        # gr.Request).
        root = first.root_url
        target = self.blocks.blocks.get(first.trigger_id) if first.trigger_id is not None else None
        folder = Path(tempfile.mkdtemp(prefix="surge-in-", dir=_upload_folder()))
        # A select's value may be a file the page was sent (a gallery's image): Gradio accepts event data's
        # files only from its cache, as an input's, so they come from S3 into the call's folder too.
        event_data = EventData(target, traverse(first.event_data, lambda f: self._fetch(f, folder), is_file_obj))
        loop = asyncio.new_event_loop()
        state = SessionState(self.blocks)
        kept = self._load_states(calls, block_fn, state, folder, brought)
        shaped = {block._id: state.blocks_config.blocks.get(block._id) for block in self._shaped_of(block_fn)}
        by_contents = self._by_contents(folder)
        with self.progress.lock:
            self.progress.notices[event_id] = calls
            if progress is not None:
                self.progress.sinks[event_id] = progress

        def run(block_fn: BlockFunction, inputs: list[Any], iterator: Any) -> dict[str, Any]:
            if len(inputs) == len(block_fn.inputs):
                inputs = [
                    [_as_file_data(block, item) for item in value]
                    if block_fn.batch and isinstance(value, list)
                    else _as_file_data(block, value)
                    for block, value in zip(block_fn.inputs, inputs, strict=True)
                ]
            inputs = _walk_files(inputs, lambda f: self._fetch(f, folder))
            try:
                result: dict[str, Any] = loop.run_until_complete(
                    self.blocks.process_api(
                        block_fn,
                        inputs,
                        state=state,
                        request=request,
                        iterator=iterator,
                        event_id=event_id,
                        event_data=event_data,
                    )
                )
            except GradioError as error:
                if error.print_exception:  # as Gradio's queue prints it (gr.Error(print_exception=False) does not)
                    logger.warning("%s raised gr.Error", block_fn.api_name or block_fn.name, exc_info=True)
                raise Error(
                    str(error.message), title=error.title or "Error", duration=error.duration, visible=error.visible
                ) from error
            result["data"] = _as_sent(_walk_files(result["data"], lambda f: self._store(f, root, started)))
            # The gr.State values the call changed, so far: its completion names them and the page fires their
            # .change listeners, which read them once they are kept (a generator's steps are told at its end).
            told = [
                block_id
                for block_id in result.get("changed_state_ids") or []
                if kept is None
                or not _same_files(kept.states.get(block_id), state.state_data.get(block_id), by_contents)
            ]
            for call in calls:
                changed = {*call.output.get("changed_state_ids", []), *told}
                call.output["changed_state_ids"] = sorted(changed)
            return result

        try:
            yield run
            if kept is not None and self.states is not None:
                changed = _changed(kept.states, block_fn, state, by_contents)
                for block_id in changed:
                    changed[block_id] = self._with_files(state.state_data[block_id], changed[block_id], folder, brought)
                props, dropped = self._reshaped(kept, shaped, state)
                self.states.save(calls[0].session_hash, changed, props, dropped)
        finally:
            with self.progress.lock:
                self.progress.sinks.pop(event_id, None)
                self.progress.notices.pop(event_id, None)
            loop.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _load_states(
        self, calls: list[Call], block_fn: BlockFunction, state: SessionState, folder: Path, brought: dict[str, str]
    ) -> _Loaded | None:
        """Put the session's kept states, and its components as its events changed them, into `state`;
        returns what was read (None: the event touches neither, or runs as a batch, which shares no
        session). An event that only writes states reads nothing (what it writes is kept whatever was
        there) unless one of them has a `.change` listener (`_watched`) or it touches a component whose
        properties the session may have changed (`_shaped_components`). Files a state refers to are
        fetched into the call's `folder` (noted in `brought`), and the state refers to them there."""
        touched = [*block_fn.inputs, *block_fn.outputs]
        shaped = self._shaped_of(block_fn)
        if len(calls) != 1 or self.states is None or not (shaped or any(b.stateful for b in touched)):
            return None
        if not shaped and not any(b.stateful for b in block_fn.inputs) and not self._watched(block_fn):
            return _Loaded({}, {})
        lives = {block._id: life for block in touched if (life := _life(block)) is not None}
        read = self.states.load(calls[0].session_hash, lives)
        kept = read.states
        for block_id, pickled in kept.items():
            if block_id in self.blocks.blocks and self.blocks.blocks[block_id].stateful:
                value = pickle.loads(pickled)
                if isinstance(value, _KeptFiles):
                    value = self._fetched_files(value, folder, brought)
                    kept[block_id] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)  # as `_changed` sees it
                state.state_data[block_id] = value
        props: dict[int, dict[str, Any]] = {}
        for block in shaped:
            if read.props.get(block._id):
                props[block._id] = {name: pickle.loads(value) for name, value in read.props[block._id].items()}
                try:
                    state[block._id] = _with_props(block, props[block._id])
                except Exception:  # kept by an earlier version of the app, whose component took other arguments
                    logger.warning("component %s: kept %s no longer apply", block._id, sorted(props[block._id]))
        return _Loaded(kept, props)

    def _shaped_of(self, block_fn: BlockFunction) -> list[Any]:
        touched = {block._id: block for block in [*block_fn.inputs, *block_fn.outputs]}
        return [block for block_id, block in touched.items() if block_id in self._shaped]

    def _reshaped(
        self, kept: _Loaded, before: dict[int, Any], state: SessionState
    ) -> tuple[dict[int, dict[str, bytes]], dict[int, list[str]]]:
        """The component properties the call changed, as Gradio keeps them in its session (an event that
        returns `gr.Dropdown(choices=...)` replaces the session's dropdown, and its later calls check
        their input against those choices): per component, those now other than the app declares them,
        to keep (pickled), and those kept before that are back to the app's (to drop)."""
        props: dict[int, dict[str, bytes]] = {}
        dropped: dict[int, list[str]] = {}
        for block_id, block in before.items():
            now = state.blocks_config.blocks.get(block_id)
            if now is None or now is block:
                continue  # not written by this call
            declared = self.blocks.blocks[block_id].constructor_args
            wanted = {
                name: now.constructor_args[name]
                for name in self._shaped[block_id]
                if name in now.constructor_args and not _same(now.constructor_args[name], declared.get(name, _UNSET))
            }
            had = kept.props.get(block_id, {})
            changed = {}
            for name, value in wanted.items():
                if _same(had.get(name, _UNSET), value):
                    continue
                try:
                    changed[name] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:
                    logger.warning("component %s: %s=%r cannot be kept between calls", block_id, name, value)
            props[block_id] = changed
            dropped[block_id] = [name for name in had if name not in wanted]
        return props, dropped

    def _watched(self, block_fn: BlockFunction) -> bool:
        """Whether the event writes a state that has a `.change` listener. Gradio tells the page such a state
        changed when its value after the call differs from before (`changed_state_ids`), so the call starts
        from the kept value even when it only writes the state: compared with the initial value, a write
        of the same value counted as a change, and a ChatInterface's history listener, whose chain writes
        the history back, fired itself again and again."""
        return any(
            block.stateful and any((block._id, "change") in fn.targets for fn in self.blocks.fns.values())
            for block in block_fn.outputs
        )

    def _with_files(self, value: Any, pickled: bytes, folder: Path, brought: dict[str, str]) -> bytes:
        """A state's value as kept: when it refers to files of this worker that will not outlast the call
        or that another worker lacks (the call's input folder, Gradio's cache: a multimodal message, a
        chat's files), they go to S3 beside it, and the next call gets them back (`_fetched_files`)."""
        if self.files is None:
            return pickled
        local = sorted({text for text in _strings(value) if self._ephemeral_file(text, folder)})
        if not local:
            return pickled
        # A file a state brought back keeps its stored copy.
        names = {path: brought.get(path) or self.files.put_path(Path(path)) for path in local}
        return pickle.dumps(_KeptFiles(value, names), protocol=pickle.HIGHEST_PROTOCOL)

    def _by_contents(self, folder: Path) -> Callable[[Any], Any]:
        """A state's value with each file of this call named by its contents and name, as Gradio's cache
        names its copies: the same file in a state is no change whichever copy it came from. Here each
        copy has a path of its own (the state's file fetched back, the same file sent again as an input
        under the name a previous output gave it), and a multimodal chat's history, written back from the
        chatbot, counted as changed at every step: its `.change` listener re-rendered the chatbot, whose
        files took new names, which wrote the history again, without end."""
        digests: dict[str, str] = {}

        def named(text: str) -> str:
            if text not in digests:
                if not self._ephemeral_file(text, folder):
                    return text
                digest = hashlib.sha256()
                with open(text, "rb") as file:
                    for chunk in iter(lambda: file.read(1 << 20), b""):
                        digest.update(chunk)
                digests[text] = f"{digest.hexdigest()}/{Path(text).name}"
            return digests[text]

        return lambda value: _map_strings(value, named, file_urls=False)

    def _fetched_files(self, kept: _KeptFiles, folder: Path, brought: dict[str, str]) -> Any:
        if self.files is None:
            return kept.value
        here: dict[str, str] = {}
        for path, name in kept.names.items():
            try:
                here[path] = str(self.files.fetch(name, folder))
            except Exception:  # gone from the bucket (it keeps files a day): the value names it as it was
                logger.warning("a file a session's state refers to could not be fetched: %s", name, exc_info=True)
        brought.update({here[path]: kept.names[path] for path in here})
        return _map_strings(kept.value, lambda text: here.get(text, text))

    def _ephemeral_file(self, text: str, folder: Path) -> bool:
        """Whether a state's string names a file of this worker that the next call may lack: in the call's
        input folder, Gradio's cache, or the temp folder (a function's `tempfile` output), at most as large
        as an upload may be."""
        if not text.startswith("/") or len(text) > 4096 or "\0" in text:
            return False
        path = Path(text)
        try:
            if not path.is_file():
                return False
            resolved = path.resolve()
            if resolved.is_relative_to(folder.resolve()) or self._in_cache(path):
                return True
            limit = self.max_file_size
            in_temp = resolved.is_relative_to(Path(tempfile.gettempdir()).resolve())
            return in_temp and (limit is None or path.stat().st_size <= limit)
        except (OSError, ValueError):
            return False

    def _fetch(self, file: dict[str, Any], folder: Path) -> dict[str, Any]:
        """An input file: it must name an uploaded file, one the page's config names, or a public http(s)
        URL (`handle_file("https://...")`), which Gradio's own SSRF-guarded download fetches, as Gradio
        does; a local path would read the worker's disk on a client's word."""
        name = file.get("path")
        if isinstance(name, str) and name in self.page_files():
            return file  # an example's file, or a default value, as the page's config gave it: Gradio's copy
        if isinstance(name, str) and is_http_url_like(name):
            return self._from_url(file, name, folder)
        url = file.get("url")
        if not is_name(name) and isinstance(url, str) and url.startswith("data:"):
            return self._from_data_url(file, url, folder)
        if not is_name(name) or self.files is None:
            raise Error(NOT_UPLOADED)
        local = self.files.fetch(str(name), folder)
        return {**file, "path": str(local), "url": None}

    def _from_url(self, file: dict[str, Any], url: str, folder: Path) -> dict[str, Any]:
        """A file given by its public URL, downloaded into the call's folder with Gradio's guard (see
        `_download`), at most as large as an upload may be."""
        limit = self.max_file_size
        try:
            path = client_utils.synchronize_async(_download, url, folder, limit)
        except _TooLarge:
            raise Error(f"The input file {url[:200]} is larger than this app's limit of {limit} bytes.") from None
        except Exception as error:  # refused by the guard, unreachable, not 200, too slow: the visitor is told why
            raise Error(
                f"Could not fetch the input file {url[:200]}: {str(error)[:200] or type(error).__name__}"
            ) from None
        return {**file, "path": str(path), "url": None}

    @staticmethod
    def _from_data_url(file: dict[str, Any], url: str, folder: Path) -> dict[str, Any]:
        """A file sent inline as a `data:` URL (within the join's payload limit), written into the call's
        folder as Gradio writes one into its cache: under its `orig_name`, or `file.<type>`."""
        try:
            path = processing_utils.save_base64_to_cache(url, str(folder), file.get("orig_name") or None)
        except (ValueError, binascii.Error):
            raise Error("An input file's data: URL is not valid base64.") from None
        return {**file, "path": path, "url": None}

    def _store(self, file: dict[str, Any], root: str, since: float) -> dict[str, Any]:
        """An output file: put in S3 under a new name, its URL under `root` (the app's public URL; a
        relative URL when unknown). `since`: when the call began (a cache copy made since is the call's)."""
        path = file.get("path")
        if is_name(path) or not isinstance(path, str):
            return file
        local = Path(path)
        cached = self._in_cache(local)
        with self._stored.lock(path):
            name = self._stored.get(path)
            if name is None:
                if not local.is_file():
                    return file
                if self.files is None:
                    raise Error("This app returns files, but no file bucket is configured (FILES_BUCKET_NAME).")
                name = self.files.put_path(local)
                if cached:
                    # Gradio names a cache copy by its contents, so the same path may come again (twice in
                    # one call's outputs, or from a call beside this one): it is the object just stored.
                    self._stored.put(path, name)
            if cached and _made_since(local, since):
                # Gradio's cache copy of this call's output: in S3 now, and a worker's disk must not fill up
                # with them. One made before (an example's file, a component's default value: Gradio copies
                # those at start, and later calls read them) stays.
                local.unlink(missing_ok=True)
        url = f"gradio_api/file={encode_file_path(name)}"  # as Gradio's: `résumé #1.txt` in a URL
        return {**file, "path": name, "url": f"{root}/{url}" if root else url}

    def _in_cache(self, path: Path) -> bool:
        """Whether `path` is in Gradio's cache (each component's `GRADIO_CACHE`, the upload folder)."""
        folders = {str(getattr(block, "GRADIO_CACHE", "")) for block in self.blocks.blocks.values()}
        folders.add(_upload_folder())
        resolved = path.resolve()
        return any(folder and resolved.is_relative_to(Path(folder).resolve()) for folder in folders)


def _in_gradio(path: Path) -> bool:
    """Whether `path` is a file of the gradio package itself: a component's own icon (a ChatInterface's
    "New chat" button names `gradio/icons/plus.svg` in the config, which Gradio serves)."""
    return path.resolve().is_relative_to(Path(gr.__file__).parent.resolve())


def _mounted_with(blocks: gr.Blocks) -> dict[str, Any]:
    """The settings `gr.mount_gradio_app(app, blocks, ...)` gave a Blocks it mounted (launch's, for an app
    served by uvicorn: its `show_error` defaults to True), as launch arguments; none if not mounted."""
    if getattr(blocks, "custom_mount_path", None) is None:
        return {}
    names = ("show_error", "auth", "auth_dependency", "allowed_paths", "blocked_paths", "footer_links", "max_file_size")
    return {name: getattr(blocks, name) for name in names if getattr(blocks, name, None) is not None}


def _made_since(path: Path, since: float) -> bool:
    """Whether the file was written (or copied: a copy's time of change is its own) at or after `since`."""
    try:
        return path.stat().st_ctime >= since
    except OSError:
        return False


@dataclass
class _KeptFiles:
    """A kept state's value that refers to files, and the names they were put under in S3 (by local path)."""

    value: Any
    names: dict[str, str]


def _strings(value: Any) -> list[str]:
    """Every string inside a state's value (containers, pydantic models such as `FileData`)."""
    found: list[str] = []

    def note(text: str) -> str:
        found.append(text)
        return text

    _map_strings(value, note)
    return found


class _TooLarge(Exception):
    pass


DOWNLOAD_LIMIT_S = 120.0
"""The longest an input file's download may take (a slow server must not hold a worker's slot)."""


async def _download(url: str, folder: Path, limit: int | None) -> Path:
    """Download `url` into a folder of its own in `folder`, as Gradio's `ssrf_protected_download` does: a
    host is resolved and refused unless public (safehttpx's `async_validate_url`; the instance's metadata
    and private networks are not), the request goes to the address checked (`AsyncSecureTransport`), each
    redirect is checked again, and Hugging Face's hosts are taken as they are. Unlike Gradio's, the body
    is streamed to disk and stopped past `limit`, and the whole takes at most `DOWNLOAD_LIMIT_S`: Gradio's
    reads the body into memory first, so one URL of a file of several GB could exhaust a worker."""
    name = client_utils.strip_invalid_filename_characters(Path(urlsplit(url).path.rstrip("/")).name) or "file"
    target = folder / secrets.token_hex(8) / name
    target.parent.mkdir(parents=True, exist_ok=True)

    async def fetch(url: str) -> Path:
        for _ in range(processing_utils.MAX_REDIRECTS + 1):
            host = httpx.URL(url).host
            if safehttpx.matches_domain_whitelist(host, processing_utils.PUBLIC_HOSTNAME_WHITELIST):
                transport = processing_utils.async_transport  # as Gradio: taken as they are
            else:
                transport = safehttpx.AsyncSecureTransport(await safehttpx.async_validate_url(host))
            async with (
                httpx.AsyncClient(transport=transport) as client,
                client.stream("GET", url, follow_redirects=False) as response,
            ):
                if response.has_redirect_location:
                    url = urljoin(str(response.url), response.headers["Location"])
                    continue
                if response.status_code != 200:
                    raise ValueError(f"Failed to download file. Status code: {response.status_code}")
                size = 0
                with target.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if limit is not None and size > limit:
                            raise _TooLarge
                        out.write(chunk)
                return target
        raise ValueError(f"Exceeded maximum of {processing_utils.MAX_REDIRECTS} redirects.")

    try:
        return await asyncio.wait_for(fetch(url), DOWNLOAD_LIMIT_S)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _map_strings(value: Any, fn: Callable[[str], str], *, file_urls: bool = True) -> Any:
    """`value` with each string inside it (containers, pydantic models) replaced by `fn(string)`; without
    `file_urls`, each file's own `url` (beside its `path`, in a `FileData` or a dict of one) is left out:
    the URL of one copy of the file (perhaps gone with its call), where its `path` names the file."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        mapped = {key: _map_strings(item, fn, file_urls=file_urls) for key, item in value.items()}
        return mapped if file_urls or "path" not in mapped or "url" not in mapped else {**mapped, "url": None}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_map_strings(item, fn, file_urls=file_urls) for item in value]
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*items)  # a named tuple
        return items if isinstance(value, list) else type(value)(items)
    if isinstance(value, pydantic.BaseModel):
        names = type(value).model_fields
        fields = {name: _map_strings(getattr(value, name), fn, file_urls=file_urls) for name in names}
        if not file_urls and "path" in names and "url" in names:
            fields["url"] = None
        return value.model_copy(update=fields)
    return value


class _StoredCopies:
    """Gradio cache copies this process put in S3 and removed from disk, path → stored name, for a
    while: a copy's path names its contents, so the same path again is the same file. One lock per path
    (striped), so that two calls never both store, nor one read a copy the other is removing."""

    KEEP_S = 600.0
    """How long a stored copy's name is reused: far less than the bucket keeps files."""
    MOST = 4096

    def __init__(self) -> None:
        self._names: dict[str, tuple[float, str]] = {}
        self._locks = [threading.Lock() for _ in range(64)]
        self._guard = threading.Lock()

    def lock(self, path: str) -> threading.Lock:
        return self._locks[hash(path) % len(self._locks)]

    def get(self, path: str) -> str | None:
        with self._guard:
            found = self._names.get(path)
        return found[1] if found and time.monotonic() - found[0] < self.KEEP_S else None

    def put(self, path: str, name: str) -> None:
        with self._guard:
            self._names.pop(path, None)
            self._names[path] = (time.monotonic(), name)
            while len(self._names) > self.MOST:
                del self._names[next(iter(self._names))]


def _request(call: Call) -> gr.Request:
    """The `gr.Request` a function of the call gets: as Gradio's queue makes it, around the join's own
    Starlette request, here one rebuilt from what the front recorded of the join (its URL, headers less
    credentials, the caller's address), so `request.url.path`, a header looked up in any case,
    `request.base_url` and `request.method` answer as they do in Gradio."""
    caller = call.caller or Caller()
    url = urlsplit(caller.url or "http://localhost/gradio_api/queue/join")
    default_port = 443 if url.scheme == "https" else 80
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": url.scheme or "http",
        "server": (url.hostname or "localhost", url.port or default_port),
        "path": url.path or "/",
        "raw_path": (url.path or "/").encode(),
        "root_path": "",
        "query_string": (url.query or urlencode(caller.query_params)).encode(),
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in caller.headers.items()
        ],
        "client": (caller.client_host or "", caller.client_port),
        "path_params": {},
        "state": {},
    }
    return gr.Request(request=StarletteRequest(scope), session_hash=call.session_hash)


def _prepare_page(blocks: gr.Blocks) -> None:
    """What `launch()` does for the page (theme, css, js, head; gradio 6 takes them there or in the
    constructor): Surge never calls `launch()`."""
    if blocks.theme is None:
        blocks.theme = gradio_utils.get_theme(blocks._deprecated_theme)  # type: ignore[assignment]
        blocks.css = blocks.css if blocks.css is not None else blocks._deprecated_css
        blocks.css_paths = blocks._deprecated_css_paths or []
        blocks.js = blocks.js if blocks.js is not None else blocks._deprecated_js
        blocks.head = blocks.head if blocks.head is not None else blocks._deprecated_head
        blocks.head_paths = blocks._deprecated_head_paths
        blocks._set_html_css_theme_variables()  # type: ignore[no-untyped-call]


def _as_json(value: Any) -> dict[str, Any]:
    """As Gradio's own routes encode it (callables and other objects become strings)."""
    decoded: dict[str, Any] = json.loads(ORJSONResponse._render(value))
    return decoded


_OUTPUTS = pydantic.TypeAdapter(list[Any])


def _as_sent(data: list[Any]) -> list[Any]:
    """Outputs as Gradio's queue sends them (pydantic's dump of the message, then orjson with `str` for
    what remains): `gr.JSON`'s `JsonData` becomes its JSON, a value JSON cannot carry its `str()`."""
    sent: list[Any] = orjson.loads(orjson.dumps(_OUTPUTS.dump_python(data), default=str))
    return sent


def _is_generator(fn: Any) -> bool:
    return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


def _gradio_diff(previous: list[Any], current: list[Any]) -> list[Any]:
    return [gradio_utils.diff(old, new) for old, new in zip(previous, current, strict=True)]  # type: ignore[no-untyped-call]


def _upload_folder() -> str:
    folder = Path(gradio_utils.get_upload_folder())
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def _is_file(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("meta"), dict)
        and value["meta"].get("_type") == "gradio.FileData"
    )


def _as_file_data(block: Any, value: Any) -> Any:
    """An input of a file component (`gr.File`, `gr.Image`, `gr.Audio`...) given as `{"path": ...}` without
    `meta`, as curl users and gradio_client's `{"path": ...}` send it: Gradio reads it as its `FileData`,
    and so it is one here (an upload's name is fetched; any other path is refused, not read from the
    worker's disk)."""
    model = getattr(block, "data_model", None)
    if not isinstance(model, type):
        return value
    if issubclass(model, ListFiles) and isinstance(value, list):
        return [_with_meta(item) for item in value]
    fields = getattr(model, "model_fields", {})
    return _with_meta(value) if "path" in fields and "url" in fields else value


def _with_meta(value: Any) -> Any:
    """A bare `{"path": ...}` marked as Gradio's FileData; anything else as it is."""
    if isinstance(value, dict) and isinstance(value.get("path"), str) and "meta" not in value:
        return {**value, "meta": {"_type": "gradio.FileData"}}
    return value


def _walk_files(value: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """`value` with every Gradio `FileData` in it replaced by `change(file)`."""
    if _is_file(value):
        return change(value)
    if isinstance(value, dict):
        return {key: _walk_files(item, change) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk_files(item, change) for item in value]
    return value


# ---- what can be served --------------------------------------------------------------------------


def _served(
    blocks: gr.Blocks,
) -> tuple[list[tuple[int, BlockFunction]], list[tuple[int, BlockFunction]], list[tuple[BlockFunction, str]]]:
    """The public events (each checked: one that cannot work is refused), the page's own events with a
    Python function (JavaScript-only ones run in the browser), and the page's events left out, each with
    why."""
    public: list[tuple[int, BlockFunction]] = []
    page: list[tuple[int, BlockFunction]] = []
    skipped: list[tuple[BlockFunction, str]] = []
    for fn_id, block_fn in blocks.fns.items():
        if block_fn.fn is None:
            continue
        name = f"event {block_fn.api_name!r} ({block_fn.name})"
        why = _cannot_serve(block_fn)
        if block_fn.api_visibility == "public":
            if why:
                raise Unsupported(f"{name} {why}")
            if not API_NAME_PATTERN.match(str(block_fn.api_name)):
                raise Unsupported(
                    f"{name}: api_name must be letters, digits, '-' or '_', at most 60 (it names a queue)."
                )
            if block_fn.api_name == PAGE_EVENTS:
                raise Unsupported(f"{name}: the api_name {PAGE_EVENTS!r} names Surge's lane of the page's own events.")
            public.append((fn_id, block_fn))
        elif why:
            skipped.append((block_fn, why))
        else:
            page.append((fn_id, block_fn))
    return public, page, skipped


def _label(block_fn: BlockFunction) -> str:
    """An event as its app's author knows it: a `@gr.render`'s own event (Gradio names it `apply`) by the
    function it renders with."""
    renderable = block_fn.renderable
    if renderable is not None and getattr(block_fn.fn, "__self__", None) is renderable:
        return f"@gr.render function {getattr(getattr(renderable, 'fn', None), '__name__', '?')!r}"
    return f"event {block_fn.api_name!r}"


def _cannot_serve(block_fn: BlockFunction) -> str | None:
    if block_fn.connection == "stream":
        return "is a .stream() event: streamed inputs need one process per session."
    streamed = [b for b in block_fn.outputs if isinstance(b, gr.components.StreamingOutput) and b.streaming]
    if streamed:
        return (
            f"streams its output to gr.{type(streamed[0]).__name__}(streaming=True): Gradio sends each chunk as a "
            "segment of a live stream from its one process, which Surge does not serve (each chunk would replace "
            "the last). With streaming=False, return (or yield) the whole media instead."
        )
    if block_fn.renderable is not None:
        return "is inside @gr.render: rendering needs the session's state in one process."
    if any(event == "unload" for _, event in block_fn.targets):
        return (
            "is demo.unload(): Gradio runs it when a page's tab closes, which Surge cannot see (on Lambda a "
            "dropped connection is not reported)."
        )
    return None


def _notes(
    blocks: gr.Blocks, public: list[tuple[int, BlockFunction]], skipped: list[tuple[BlockFunction, str]]
) -> list[str]:
    """What works differently from Gradio without being refused, one line each."""
    notes = [
        f"note: event {block_fn.api_name!r} sets queue=False; Surge runs it on a worker through the queue, "
        "under no concurrency limit"
        for _, block_fn in public
        if block_fn.queue is False
    ]
    for _, block_fn in public:
        for interval in _timer_intervals(blocks, block_fn):
            notes.append(
                f"note: event {block_fn.api_name!r} runs on a gr.Timer: every open page joins it each {interval:g} s, "
                "one job each time"
            )
    notes.extend(f"note: the page's {_label(block_fn)} is not served: it {why}" for block_fn, why in skipped)
    if any(isinstance(block, gr.DeepLinkButton) for block in blocks.blocks.values()):
        notes.append(
            "note: gr.DeepLinkButton is not served: Gradio saves the session's component values in its process "
            "(/gradio_api/deep_link), which Surge does not keep; the button copies no link"
        )
    return notes


def _launch_notes(launched: dict[str, Any]) -> list[str]:
    """`launch()` settings for Gradio's own server that a user would miss: Surge serves the app at its own
    address (`make run`: 127.0.0.1:PORT; deployed: the stack's endpoint). The port alone goes unsaid."""
    notes = []
    if launched.get("share"):
        notes.append(
            "note: launch(share=True) is not taken: Surge opens no share link (deployed, its endpoint is public)"
        )
    server_name = launched.get("server_name")
    if server_name and server_name not in ("127.0.0.1", "localhost"):
        notes.append(f"note: launch(server_name={server_name!r}) is not taken: make run listens on 127.0.0.1 only")
    if launched.get("mcp_server") or os.environ.get("GRADIO_MCP_SERVER", "").lower() == "true":
        notes.append("note: launch(mcp_server=True) is not taken: Surge serves no MCP server (/gradio_api/mcp/)")
    return notes


_UNSET = object()


def _page_config(config: dict[str, Any], page: str) -> dict[str, Any]:
    """The config of one page of a multipage app: its own components, events and layout, as Gradio's
    server cuts it for the page's route (`get_page_config` in `gradio.routes`, which is not importable)."""
    own = config["page"][page]
    components, dependencies = set(own["components"]), set(own["dependencies"])
    cut = {key: value for key, value in config.items() if key not in {"components", "dependencies", "layout"}}
    cut["components"] = [c for c in config["components"] if c["id"] in components]
    cut["dependencies"] = [d for d in config["dependencies"] if d["id"] in dependencies]
    cut["layout"] = own["layout"]
    cut["current_page"] = page
    copied: dict[str, Any] = json.loads(json.dumps(cut))
    return copied


@dataclass
class _Loaded:
    """What a call read of its session: its states as kept (pickled) and its changed component properties."""

    states: dict[int, bytes]
    props: dict[int, dict[str, Any]]


def _shaped_components(blocks: gr.Blocks) -> dict[int, frozenset[str]]:
    """Components that one Python event writes and another preprocesses, with the properties their
    `preprocess` reads (`_preprocess_props`). Gradio keeps, per session, the component an event returned
    (`gr.Dropdown(choices=[...])`, `gr.Slider(maximum=...)`) and preprocesses later inputs with it: a
    dropdown's new choices are valid values from then on. Only these are kept here (a `Textbox` made
    non-interactive changes nothing a later call does), so other events read and write nothing more."""
    python = [fn for fn in blocks.fns.values() if fn.fn is not None]
    written = {block._id for fn in python for block in fn.outputs}
    read = {block._id for fn in python if fn.preprocess for block in fn.inputs}
    shaped: dict[int, frozenset[str]] = {}
    for block_id in written & read:
        block = blocks.blocks.get(block_id)
        if block is not None and not block.stateful and (props := _preprocess_props(type(block))):  # type: ignore[arg-type]
            shaped[block_id] = props
    return shaped


@functools.cache
def _preprocess_props(cls: Any) -> frozenset[str]:
    """The constructor parameters a component class's `preprocess` reads (`self.<name>`, in it or in the
    class's methods it calls): `choices` for a Dropdown, `minimum`/`maximum` for a Slider, `type` for an
    Image; none for a Textbox."""
    try:
        parameters = set(inspect.signature(cls.__init__).parameters) - {"self", "value", "render"}
    except (TypeError, ValueError):
        return frozenset()
    found: set[str] = set()
    seen: set[str] = set()
    todo = ["preprocess"]
    while todo:
        name = todo.pop()
        seen.add(name)
        try:
            source = inspect.getsource(getattr(cls, name))
        except (AttributeError, TypeError, OSError):
            continue
        for attribute in re.findall(r"self\.(\w+)", source):
            # An attribute kept under another name (a Dataset's `samples` as `raw_samples`) counts too.
            named = {p for p in parameters if attribute in (p, f"raw_{p}", f"_{p}")}
            if named:
                found.update(named)
            elif attribute not in seen and inspect.isfunction(getattr(cls, attribute, None)):
                todo.append(attribute)
    return frozenset(found)


def _same(one: Any, other: Any) -> bool:
    try:
        return bool(one == other)
    except Exception:  # an array's comparison has no single truth value
        return False


def _with_props(block: Any, props: dict[str, Any]) -> Any:
    """The component as an event of the session left it: what Gradio's `postprocess_data` puts in its
    session for an update (the declared arguments, the update's on top, no value, not rendered)."""
    kwargs = {**block.constructor_args, **props}
    kwargs.pop("value", None)
    kwargs["render"] = False
    return block.__class__(**kwargs)


def _life(block: Any) -> float | None:
    """A state's time to live in seconds (`gr.State(time_to_live=)`); None for other blocks or none set."""
    life = getattr(block, "time_to_live", None) if block.stateful else None
    return None if life is None else float(life)


def _changed(
    kept: dict[int, bytes], block_fn: BlockFunction, state: SessionState, by_contents: Callable[[Any], Any]
) -> dict[int, bytes]:
    """The event's states (read or written: a value may be changed in place) that differ from those kept,
    files compared by their contents (`by_contents`), and those it sets that have a time to live (as in
    Gradio, setting one starts its life again)."""
    changed: dict[int, bytes] = {}
    renewed = {block._id for block in block_fn.outputs if _life(block) is not None}
    for block in [*block_fn.inputs, *block_fn.outputs]:
        if not block.stateful or block._id not in state.state_data:
            continue
        value = state.state_data[block._id]
        try:
            pickled = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:
            raise Error(
                f"A gr.State holds a {type(value).__name__}, which Surge cannot keep between calls ({error}): "
                "each call of a session may run on another worker."
            ) from None
        if block._id in renewed or (
            kept.get(block._id) != pickled and not _same_files(kept.get(block._id), value, by_contents)
        ):
            changed[block._id] = pickled
    return changed


def _same_files(kept: bytes | None, value: Any, by_contents: Callable[[Any], Any]) -> bool:
    """Whether a state's kept value and its value now differ only in which copies of the same files they name."""
    if kept is None:
        return False
    try:
        before = by_contents(pickle.loads(kept))
        return pickle.dumps(before, protocol=pickle.HIGHEST_PROTOCOL) == pickle.dumps(
            by_contents(value), protocol=pickle.HIGHEST_PROTOCOL
        )
    except Exception:  # a value that cannot be read back or mapped: compared as it was
        return False


def _timer_intervals(blocks: gr.Blocks, block_fn: BlockFunction) -> list[float]:
    """The intervals of the gr.Timers whose ticks run the event (the page ticks them: each is a join)."""
    timers = [
        blocks.blocks.get(block_id) for block_id, event in block_fn.targets if event == "tick" and block_id is not None
    ]
    return [float(timer.value) for timer in timers if isinstance(timer, gr.Timer)]


def from_blocks(blocks: gr.Blocks, settings: Settings | None = None) -> GradioApp:
    return GradioApp(blocks, settings)
