"""`demo.launch()` in a Gradio app's module, held while Surge imports the module.

Gradio demos often end with an unguarded `demo.launch()` (every Hugging Face Space's `app.py` does), which
would start Gradio's own server and never return. While `load_app` imports the app's module, `launch()`
records its arguments on the app (`LAUNCH_ARGS`) and does only what Gradio's reload mode does (it applies
`theme`, `css`, `js` and `head`, and serves nothing); `surge.gradio_app` takes `show_error`, `max_threads`
and `max_file_size` from them and refuses `auth`. This module imports gradio only if the app's module does.
"""

from __future__ import annotations

import importlib.abc
import inspect
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

LAUNCH_ARGS = "surge_launch_args"
"""The attribute of a `gr.Blocks` holding the arguments of its held `launch()` call, defaults included."""


@contextmanager
def held_launch() -> Iterator[None]:
    """While inside, `gr.Blocks.launch` records its arguments and returns without serving."""
    restores: list[Callable[[], None]] = []

    def hold(gradio: ModuleType) -> None:
        restores.append(_hold(gradio.Blocks))

    finder: _AfterImport | None = None
    if "gradio" in sys.modules:
        hold(sys.modules["gradio"])
    else:
        finder = _AfterImport("gradio", hold)
        sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder is not None and finder in sys.meta_path:
            sys.meta_path.remove(finder)
        for restore in restores:
            restore()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when module `name` is imported, calls `then(module)` once it has run."""

    def __init__(self, name: str, then: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.then = then

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        spec: ModuleSpec | None = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is not self and find is not None:
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        loader = spec.loader if spec is not None else None
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            self.then(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _hold(blocks: type[Any]) -> Callable[[], None]:
    """Make `blocks.launch` record its arguments and serve nothing; returns what puts it back."""
    launch = blocks.__dict__["launch"]
    signature = inspect.signature(launch)

    def held(self: Any, *args: Any, **kwargs: Any) -> tuple[None, None, None]:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        setattr(self, LAUNCH_ARGS, {k: v for k, v in bound.arguments.items() if k != "self"})
        from gradio.cli.commands.reload import reload_thread

        was = getattr(reload_thread, "running_reload", False)
        reload_thread.running_reload = True  # Gradio's own "already launched": theme, css, js, head; no server
        try:
            launch(self, *args, **kwargs)
        finally:
            reload_thread.running_reload = was
        return None, None, None

    blocks.launch = held
    return lambda: setattr(blocks, "launch", launch)
