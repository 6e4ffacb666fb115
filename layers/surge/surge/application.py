"""The user's side: an `App` of queued functions declared with Gradio's parameter names and defaults."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from surge.held_launch import held_launch, main_block_calls
from surge.models import Caller
from surge.settings import Settings

if TYPE_CHECKING:
    from surge.gradio_page import GradioPage

F = TypeVar("F", bound=Callable[..., Any])

COMPONENT_TYPES: dict[str, str] = {
    "textbox": "str",
    "number": "float",
    "slider": "float",
    "checkbox": "bool",
    "dropdown": "str",
    "json": "dict",
    "image": "str",
}
"""Input/output component types a function may declare, with the Python type `/info` reports. An image
travels as a data URL string, not an uploaded file: `/info` said `filepath`, so gradio_client users
passed `handle_file(...)`, whose upload this app refuses."""

COMPONENT_NOTES: dict[str, str] = {
    "image": "a data URL (data:image/png;base64,...), not a file to upload",
}
"""What `/info` says of a component's value beside its type, where the type alone misleads."""

Default = Literal["default"]


@dataclass(frozen=True)
class Call:
    """One job of the call that user code is running: its session, and who joined it (if known)."""

    session_hash: str
    caller: Caller | None
    notify: Callable[[str, str, str, float | None, bool], None] | None = None
    """(message, level, title, duration, visible): a notice to the job's visitor, as `gr.Info` sends one."""
    output: dict[str, Any] = field(default_factory=dict)
    """Keys the app's framework adds to the `output` of the job's completion (a Gradio event's
    `changed_state_ids`, which fire its page's `gr.State(...).change` listeners)."""


CALLS: ContextVar[tuple[Call, ...]] = ContextVar("surge_calls", default=())
"""The jobs the running call serves, in batch order (one for an unbatched function); set by the worker."""


class Progress:
    """Declare `progress=surge.Progress()` as a parameter to report progress (like `gr.Progress`).

    The worker hands the function a live instance; calling it outside a worker does nothing.
    """

    def __init__(self) -> None:
        self._sink: Callable[[float | None, int | None, int | None, str | None, str], None] | None = None

    def bind(self, sink: Callable[[float | None, int | None, int | None, str | None, str], None]) -> Progress:
        bound = Progress()
        bound._sink = sink
        return bound

    def __call__(
        self,
        progress: float | tuple[int, int | None] | None,
        desc: str | None = None,
        total: int | None = None,
        unit: str = "steps",
    ) -> None:
        if self._sink is None:
            return
        if isinstance(progress, tuple):
            index, length = progress
            self._sink(None, index, length, desc, unit)
        else:
            self._sink(progress, None, total, desc, unit)

    def tqdm(self, iterable: Iterable[Any], desc: str | None = None, unit: str = "steps") -> Iterator[Any]:
        items = list(iterable)
        for index, item in enumerate(items):
            self((index, len(items)), desc=desc, unit=unit)
            yield item
        self((len(items), len(items)), desc=desc, unit=unit)


@dataclass(frozen=True)
class Parameter:
    name: str
    component: str
    has_default: bool
    default: Any = None


@dataclass(frozen=True)
class PageEvent:
    """One of a Gradio page's own events that a lane serves (`Function.events`)."""

    inputs: int
    outputs: int
    streams: bool
    """A generator: its outputs come as chunks."""


@dataclass
class Function:
    """One queued function: what the front advertises and what a worker runs."""

    fn: Callable[..., Any]
    fn_index: int
    api_name: str
    inputs: list[str]
    outputs: list[str]
    batch: bool
    max_batch_size: int
    concurrency_limit: int | Default | None
    concurrency_id: str
    batch_wait_ms: int
    time_limit_s: float | None
    eta_hint_s: float | None
    parameters: list[Parameter] = field(default_factory=list)
    progress_arg: str | None = None
    chunk_diff: Callable[[list[Any], list[Any]], list[Any]] | None = None
    """How a generator's chunk after the first is encoded against the one before (None: `protocol.diff`)."""
    split_failed_batch: bool = True
    """When a batch raises `surge.Error`, run its inputs again one by one, so that only the caller of the
    bad input gets the error. False for a Gradio app's event: Gradio fails every caller of the batch with
    the error, once (running a batch's good inputs twice would repeat their side effects)."""
    events: dict[int, PageEvent] | None = None
    """A lane of a Gradio page's own events (fn_index → its shape), None for one event. A lane's job
    carries `[fn_index, *inputs]` as its data, and `fn` returns (or yields) that event's whole output row."""
    reserve: Callable[[list[Any]], Callable[[], None] | None] | None = None
    """Reserve, for a job with these inputs (as stored), a place to start in this process now (a lane: a
    place under its event's concurrency limit). Returns how to give the place back if the job is not run
    after all (the call itself takes it), or None: none free, and the worker parks the job, unclaimed."""

    @property
    def is_generator(self) -> bool:
        """Whether it yields its outputs: a generator function, an async one, or an instance whose
        `__call__` is one (as Gradio tells them)."""
        return _yields(self.fn)

    def serves(self, fn_index: int) -> bool:
        if self.events is not None:
            return fn_index in self.events
        return fn_index == self.fn_index

    def streams(self, data: list[Any]) -> bool:
        """Whether the job with these inputs (as stored) yields chunks."""
        if self.events is not None:
            return self.events[data[0]].streams
        return self.is_generator

    @property
    def receive_batch_size(self) -> int:
        return self.max_batch_size if self.batch else 1


class App:
    """A set of queued functions with app-wide queue settings (like `gr.Blocks().queue(...)`).

    `max_size` bounds the jobs *waiting* across the app (None: unbounded); `default_concurrency_limit`
    applies to functions that do not set their own (1, as in Gradio; None: unlimited); `max_wait_s`
    refuses a join whose expected wait already exceeds it; `show_error` sends the message of any
    exception (not only `surge.Error`) to the client.
    """

    def __init__(
        self,
        *,
        title: str = "Surge app",
        max_size: int | None = None,
        default_concurrency_limit: int | None = 1,
        max_threads: int = 40,
        max_wait_s: float | None = None,
        show_error: bool = False,
    ) -> None:
        if max_size is not None and max_size < 0:
            raise ValueError("max_size must be >= 0 or None")
        _check_limit("default_concurrency_limit", default_concurrency_limit)
        if max_threads < 1:
            raise ValueError("max_threads must be >= 1")
        if max_wait_s is not None and not max_wait_s > 0:
            raise ValueError(f"max_wait_s must be > 0 seconds, or None for no limit (got {max_wait_s!r})")
        self.title = title
        self.max_size = max_size
        self.default_concurrency_limit = default_concurrency_limit
        self.max_threads = max_threads
        self.max_wait_s = max_wait_s
        self.show_error = show_error
        self.functions: list[Function] = []
        self.max_file_size: int | None = None
        """Largest upload in bytes (None: the app takes no files)."""
        self.notes: list[str] = []
        """One line each, for whoever starts the app: what works differently here (`make run` prints them)."""
        self.api_open = True
        """Gradio's `queue(api_open=)`: False closes the direct call (`POST /gradio_api/run/<api_name>`) to every
        event but those in `unqueued`, as Gradio closes it to queued events."""
        self.unqueued: set[str | int] = set()
        """Events Gradio runs outside its queue (`queue=False`), by api_name and by fn_index."""
        self.unserved: dict[int, str] = {}
        """A page's own events left out (`@gr.render`), by fn_index: why, for the visitor whose page joins one."""
        self._setup_hooks: list[Callable[[], None]] = []

    def function(
        self,
        *,
        inputs: list[str],
        outputs: list[str],
        api_name: str | None = None,
        batch: bool = False,
        max_batch_size: int = 4,
        concurrency_limit: int | Default | None = "default",
        concurrency_id: str | None = None,
        batch_wait_ms: int = 0,
        time_limit_s: float | None = None,
        eta_hint_s: float | None = None,
    ) -> Callable[[F], F]:
        """Register a queued function. Names and defaults follow Gradio's event listeners.

        `batch_wait_ms` lets a worker wait that long to fill a batch (Gradio takes what is queued);
        `time_limit_s` fails a call that runs longer; `eta_hint_s` gives an ETA before the first run.
        """

        def register(fn: F) -> F:
            name = api_name or _default_api_name(fn)
            self._check_new(name, inputs, outputs, batch, max_batch_size, fn)
            _check_tuning(name, concurrency_limit, batch_wait_ms, time_limit_s, eta_hint_s)
            parameters, progress_arg = _parameters(fn, inputs)
            self.functions.append(
                Function(
                    fn=fn,
                    fn_index=len(self.functions),
                    api_name=name,
                    inputs=list(inputs),
                    outputs=list(outputs),
                    batch=batch,
                    max_batch_size=max_batch_size,
                    concurrency_limit=concurrency_limit,
                    concurrency_id=concurrency_id or name,
                    batch_wait_ms=batch_wait_ms,
                    time_limit_s=time_limit_s,
                    eta_hint_s=eta_hint_s,
                    parameters=parameters,
                    progress_arg=progress_arg,
                )
            )
            return fn

        return register

    def setup(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Register a hook each worker process runs once before its first job (load a model here)."""
        self._setup_hooks.append(hook)
        return hook

    def run_setup(self) -> None:
        for hook in self._setup_hooks:
            hook()

    def _check_new(
        self,
        name: str,
        inputs: list[str],
        outputs: list[str],
        batch: bool,
        max_batch_size: int,
        fn: Callable[..., Any],
    ) -> None:
        if not name.replace("_", "").isalnum() or len(name) > 60:
            raise ValueError(f"api_name {name!r} must be letters, digits and underscores, at most 60")
        if any(f.api_name == name for f in self.functions):
            raise ValueError(f"api_name {name!r} is used twice")
        for side, given in (("inputs", inputs), ("outputs", outputs)):
            if isinstance(given, str):
                raise ValueError(f"{name}: {side} is a list of component types, e.g. {side}=[{given!r}]")
        unknown = [c for c in [*inputs, *outputs] if c not in COMPONENT_TYPES]
        if unknown:
            raise ValueError(f"{name}: unknown component types {unknown}; known: {sorted(COMPONENT_TYPES)}")
        if not outputs:
            raise ValueError(f"{name}: declare at least one output")
        if batch and _yields(fn):
            raise ValueError(f"{name}: generators cannot be batch functions (as in Gradio)")
        if max_batch_size < 1:
            raise ValueError(f"{name}: max_batch_size must be >= 1")

    def wire_config(self) -> dict[str, Any] | None:
        """The app's own `/config`, when it has one (a Gradio app); None: Surge writes it."""
        return None

    def wire_info(self) -> dict[str, Any] | None:
        """The app's own `/gradio_api/info`, when it has one; None: Surge writes it."""
        return None

    def gradio_page(self) -> GradioPage | None:
        """Gradio's own page for `/`, when the app has one (a Gradio app); None: Surge's visitor page."""
        return None

    def page_files(self) -> dict[str, Path]:
        """Files the page's config names by a path of the server's (an example's file, a component's
        default value: Gradio serves them, and takes them back as inputs), path → the file here."""
        return {}

    def by_index(self, fn_index: int) -> Function | None:
        return next((f for f in self.functions if f.serves(fn_index)), None)

    def host_of(self, function: Function) -> Function:
        """The function whose workers serve `function`: a Gradio page's lane has no workers of its own and
        runs beside the app's first function (one service wakes for the page and its model); any other
        function, itself."""
        if function.events is None:
            return function
        return next(f for f in self.functions if f.events is None)

    def served_by(self, function: Function) -> list[Function]:
        """What a worker of `function` serves: the function, and the lanes it hosts."""
        return [function, *(f for f in self.functions if f is not function and self.host_of(f) is function)]

    def get(self, api_name: str) -> Function:
        for function in self.functions:
            if function.api_name == api_name:
                return function
        raise KeyError(api_name)

    def unlimited_batches_at_once(self) -> int:
        """Batches of an event with no concurrency limit that one worker runs at once: one in a Surge
        app (a worker is one device; the fleet grows by workers). A Gradio app's process runs up to
        `max_threads` calls of such an event at once, and so does its worker (`GradioApp`)."""
        return 1

    def concurrency_limit(self, concurrency_id: str) -> int | None:
        """The limit of a concurrency group: the lowest set limit among its functions (as in Gradio)."""
        limits = [
            self.default_concurrency_limit if f.concurrency_limit == "default" else f.concurrency_limit
            for f in self.functions
            if f.concurrency_id == concurrency_id
        ]
        numbers = [limit for limit in limits if limit is not None]
        return min(numbers) if numbers else None


def _yields(fn: Callable[..., Any]) -> bool:
    """A generator function, an async one, or an instance whose class's `__call__` is one."""
    return any(inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f) for f in (fn, type(fn).__call__))


def _default_api_name(fn: Callable[..., Any]) -> str:
    """As Gradio names an event's endpoint: the function's name, or its class's for a callable without one
    (`functools.partial`, an instance with `__call__`), without punctuation (a lambda is `lambda`)."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return "".join(c for c in name if c.isalnum() or c == "_")


def _check_limit(what: str, limit: object) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"{what} must be a whole number >= 1, or None for no limit (got {limit!r})")


def _check_tuning(
    name: str, concurrency_limit: object, batch_wait_ms: int, time_limit_s: float | None, eta_hint_s: float | None
) -> None:
    """A limit of 0 (or below) let the function's jobs wait for ever; the others were taken as given."""
    if concurrency_limit != "default":
        _check_limit(f"{name}: concurrency_limit", concurrency_limit)
    if batch_wait_ms < 0:
        raise ValueError(f"{name}: batch_wait_ms must be >= 0")
    for what, seconds in (("time_limit_s", time_limit_s), ("eta_hint_s", eta_hint_s)):
        if seconds is not None and not seconds > 0:
            raise ValueError(f"{name}: {what} must be > 0, or None")


def _parameters(fn: Callable[..., Any], inputs: list[str]) -> tuple[list[Parameter], str | None]:
    """Match the signature to the declared inputs, as Gradio calls a function: one positional argument per
    input; parameters past them keep their defaults, and `*args` takes inputs past the named ones. A
    parameter defaulting to `Progress()` is not an input."""
    signature = inspect.signature(fn)
    progress_arg = None
    params: list[inspect.Parameter] = []
    rest = None
    progress_at: int | None = None
    for p in signature.parameters.values():
        if isinstance(p.default, Progress):
            progress_arg = p.name
            if p.kind is not p.KEYWORD_ONLY:
                progress_at = len(params)
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            params.append(p)
        elif p.kind is p.VAR_POSITIONAL:
            rest = p.name
    if progress_at is not None and len(inputs) > progress_at:
        # The worker passes progress by name: an input passed by position would land on its place.
        raise ValueError(f"{_default_api_name(fn)}: put {progress_arg!r} after the {len(inputs)} input parameter(s)")
    needed = [p for p in params if p.default is p.empty]
    if len(inputs) < len(needed) or (len(inputs) > len(params) and rest is None):
        takes = f"{len(needed)} to {len(params)}" if len(needed) < len(params) else f"{len(params)}"
        raise ValueError(f"{_default_api_name(fn)} takes {takes} inputs but declares {len(inputs)}")
    result = [
        Parameter(
            name=p.name,
            component=component,
            has_default=p.default is not p.empty,
            default=None if p.default is p.empty else p.default,
        )
        for p, component in zip(params, inputs, strict=False)
    ]
    result += [
        Parameter(name=f"{rest}_{i}", component=component, has_default=False)
        for i, component in enumerate(inputs[len(params) :])
    ]
    return result, progress_arg


APP_ARGS_VARIABLE = "APP_ARGS"
"""The app's own command-line arguments (`python app.py --model small` → `APP_ARGS="--model small"`)."""


@contextmanager
def _app_argv(module_name: str) -> Iterator[None]:
    """`sys.argv` as `python app.py $APP_ARGS` gives it, while the app's module loads: an app that parses
    its command line at import (argparse) must not see the launcher's `--app ... --port ...`, nor a
    worker's, whichever process loads it."""
    kept = sys.argv
    try:
        given = shlex.split(os.environ.get(APP_ARGS_VARIABLE, ""))
    except ValueError as error:  # an unclosed quote
        raise AppNotFound(f"{APP_ARGS_VARIABLE}={os.environ[APP_ARGS_VARIABLE]!r}: {error}") from None
    sys.argv = [f"{module_name}.py", *given]
    try:
        try:
            spec = importlib.util.find_spec(module_name)  # imports its packages: under the app's argv too
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin:
            sys.argv[0] = spec.origin
        yield
    finally:
        sys.argv = kept


def _not_a_module(spec: str, file: Path, attribute: str) -> AppNotFound:
    """APP= names a file (the launcher imports an existing one as its module): where it looked, or how to
    name it."""
    if not file.is_file():
        return AppNotFound(
            f"APP={spec} names a file that is not there: {file.resolve()} (a relative path is taken from the "
            f"folder make runs in, {Path.cwd()}; give the app's full path, e.g. APP=$PWD/{file.name})"
        )
    folder = f" with {file.parent} on PYTHONPATH" if str(file.parent) != "." else ""
    return AppNotFound(
        f"APP={spec} is not importable here; expected a file ending in .py or module:attribute, e.g. "
        f"APP={file.stem}:{attribute or 'demo'}{folder}"
    )


def load_app(spec: str, settings: Settings | None = None) -> App:
    """Import `module:attribute` and return the app found there: a `surge.App`, or a Gradio `Blocks`
    (`gr.Interface`, `gr.ChatInterface`) turned into one. Without `:attribute`, `app` then `demo`.

    Raises `AppNotFound` (one line saying what was found and what was expected) when there is none.
    """
    module_name, _, attribute = spec.partition(":")
    if module_name.endswith(".py") or "/" in module_name:
        raise _not_a_module(spec, Path(module_name), attribute)
    module = _import_app(spec, module_name)
    names = [attribute] if attribute else ["app", "demo"]
    name = next((name for name in names if hasattr(module, name)), None)
    found = getattr(module, name) if name else None
    if found is None:
        raise AppNotFound(
            f"APP={spec}: {module_name} has no {' or '.join(names)}; expected a surge.App or gr.Blocks there"
        )
    if isinstance(found, App):
        if not found.functions:
            raise AppNotFound(
                f"APP={spec}: {module_name}.{name} has no function to serve: add one with @app.function(...)"
            )
        if settings is not None and settings.max_threads:
            found.max_threads = settings.max_threads
        return found
    if any(kind.__module__.startswith("gradio.") and kind.__name__ == "Blocks" for kind in type(found).__mro__):
        # A gr.Blocks, an Interface or ChatInterface, or an app's own subclass of one; not a component.
        from surge.gradio_app import GradioApp

        return GradioApp(found, settings)
    kind = type(found).__name__
    raise AppNotFound(
        f"APP={spec}: {module_name}.{name} is {'an' if kind[0].lower() in 'aeiou' else 'a'} {kind}; expected a "
        "surge.App or a gr.Blocks (Interface, ChatInterface)"
        + (
            ": name the Blocks it mounts (gr.mount_gradio_app), as APP=module:demo; the FastAPI app's own "
            "routes and mount path are not served"
            if type(found).__name__ in ("FastAPI", "Starlette")
            else ""
        )
    )


def _import_app(spec: str, module_name: str) -> Any:
    """The app's module, imported as `python app.py` would run it (`AppNotFound` when it cannot be)."""
    try:
        # A Gradio app's `demo.launch()` must not start Gradio's server here, and the app sees the command
        # line `python app.py` would give it, not this process's.
        with held_launch(), _app_argv(module_name):
            module = importlib.import_module(module_name)
            if "gradio" in sys.modules:
                main_block_calls(module)  # `if __name__ == "__main__": demo.queue(...).launch()`
    except SystemExit as error:  # argparse at import: its usage line is printed above
        raise AppNotFound(
            f"APP={spec} exited while loading (code {error.code}); an app that reads its command line gets its "
            f'arguments from {APP_ARGS_VARIABLE}, e.g. {APP_ARGS_VARIABLE}="--model small"'
        ) from None
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise AppNotFound(
                f"APP={spec}: no module {module_name!r}; expected module:attribute, e.g. examples.demo_app:app"
            ) from None
        raise AppNotFound(
            f"APP={spec} imports {error.name!r}, which is not installed for {sys.executable}: pip install the "
            "package that provides it there (on AWS, list it in the app's requirements.txt)"
        ) from error
    return module


def file_size_limit(limit: int | None, settings: Settings | None) -> int | None:
    """An app's largest upload (None: it takes no files), lowered to what the deployment's way in carries."""
    cap = settings.ingress_body_limit_bytes if settings is not None else 0
    if limit is None or not cap:
        return limit
    return min(limit, cap)


class AppNotFound(LookupError):
    """`APP=` names no app; the message is one line for the person who typed it."""
