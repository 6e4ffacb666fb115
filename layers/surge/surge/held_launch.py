"""`demo.launch()` in a Gradio app's module, held while Surge imports the module.

Gradio demos often end with an unguarded `demo.launch()` (every Hugging Face Space's `app.py` does), which
would start Gradio's own server and never return. While `load_app` imports the app's module, `launch()`
records its arguments on the app (`LAUNCH_ARGS`) and does only what Gradio's reload mode does (it applies
`theme`, `css`, `js` and `head`, and serves nothing); `surge.gradio_app` takes `show_error`, `max_threads`
and `max_file_size` from them and refuses `auth`. This module imports gradio only if the app's module does.

Many apps guard the call instead, often with their queue settings in it:
`if __name__ == "__main__": demo.queue(max_size=8, default_concurrency_limit=2).launch()`. An import does
not run that block, so `main_block_calls` runs from it the statements that only call `queue` and `launch`
on a module-level Blocks (nothing else of the block: it may parse the command line or start servers).
A `launch` argument whose value needs the block's own names (`server_port=args.port`) is left out: silently
when Surge has no use for it, with a warning when it has, and a login (`auth=args.users`) is refused.
"""

from __future__ import annotations

import ast
import copy
import importlib.abc
import inspect
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger("surge.held_launch")

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


MAIN_BLOCK_METHODS = ("queue", "launch")
"""What `main_block_calls` runs from an `if __name__ == "__main__":` block: calls of these only."""


def main_block_calls(module: ModuleType) -> list[str]:
    """Run, from the module's top-level `if __name__ == "__main__":` blocks, each statement that is a chain
    of `queue(...)` and `launch(...)` calls on a module-level Gradio Blocks (`launch` held: call inside
    `held_launch`), as `python app.py` would have. Returns the source of each call run; a statement whose
    arguments need what only the app's own run has (the block's names, `args.port`; its command line,
    `int(sys.argv[1])`) is run without its `launch` part, or skipped, with a warning."""
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return []
    try:
        source = Path(file).read_text(encoding="utf-8")
        tree = ast.parse(source, filename=file)
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []
    ran: list[str] = []
    for block in tree.body:
        if isinstance(block, ast.If) and _is_main_test(block.test):
            for statement in block.body:
                chain = _queue_launch_chain(statement, vars(module))
                if chain is not None:
                    ran.extend(_run_chain(chain, file, statement.lineno, vars(module)))
    return ran


LOGIN_ARGS = frozenset({"auth", "auth_dependency"})
TAKEN_LAUNCH_ARGS = (
    frozenset(
        {
            "show_error",
            "max_threads",
            "max_file_size",
            "allowed_paths",
            "blocked_paths",
            "footer_links",
            "theme",
            "css",
            "js",
            "head",
            "i18n",
        }
    )
    | LOGIN_ARGS
)
"""The `launch()` arguments Surge uses (or refuses: `auth`); the others (`server_port`, `share`, `debug`...)
concern Gradio's own server."""


def _run_chain(chain: ast.Call, file: str, line: int, names: dict[str, Any]) -> list[str]:
    """Evaluate the chain in the module's names, less the `launch` arguments that cannot be evaluated
    here (`server_port=args.port` needs the block's names; `int(sys.argv[1])` the app's own command line,
    where this process has the launcher's or the worker's), else its queue part alone; the source of what
    ran. Dropping an argument Surge takes is said in a warning; one it does not use (a port) is dropped
    silently."""
    login = {keyword.arg for call in _launch_calls(chain) for keyword in call.keywords} & LOGIN_ARGS
    chain, dropped = _without_missing_launch_args(chain, names)
    ran: ast.Call | None = None
    missing: Exception | None = None
    for call in (chain, _without_launch(chain)):
        if call is None:
            continue
        try:
            eval(compile(ast.Expression(call), file, "eval"), names)  # the app's own statement, as its own run would
        except Exception as error:  # it needs what only the app's own run has (`args.port`, its argv)
            missing = missing or error
            continue
        ran = call
        break
    blocks = names[_root(chain).id]
    launched = getattr(blocks, LAUNCH_ARGS, {})
    if any(not launched.get(name) for name in login):
        # A login asked for whose launch did not run, or ran without it (its value needs the block's
        # names): refused as a launch that ran with it is, never served open.
        setattr(blocks, LAUNCH_ARGS, launched | dict.fromkeys(login, "?"))
    if ran is None:
        logger.warning("%s:%s: not run from the __main__ block (%s)", file, line, missing)
        return []
    if missing is not None:
        logger.warning(
            "%s:%s: ran %s from the __main__ block, not its launch (%s)", file, line, ast.unparse(ran), missing
        )
    elif taken := sorted(dropped & TAKEN_LAUNCH_ARGS):
        logger.warning(
            "%s:%s: ran %s from the __main__ block without %s, which only the app's own run can evaluate",
            file,
            line,
            ast.unparse(ran),
            ", ".join(taken),
        )
    return [ast.unparse(ran)]


def _without_missing_launch_args(chain: ast.Call, names: dict[str, Any]) -> tuple[ast.Call, set[str]]:
    """The chain with each `launch` keyword argument whose value cannot be evaluated in the module's names
    removed (a copy), and the names of those removed. Any error counts: a value that reads the block's
    names, or the command line (`python app.py 7861`) this process does not have."""
    chain = copy.deepcopy(chain)
    dropped: set[str] = set()
    for call in _launch_calls(chain):
        kept = []
        for keyword in call.keywords:
            try:
                eval(compile(ast.Expression(keyword.value), "<launch argument>", "eval"), dict(names))
            except Exception:
                dropped.add(keyword.arg or "**")
                continue
            kept.append(keyword)
        call.keywords = kept
    return chain, dropped


def _launch_calls(chain: ast.Call) -> list[ast.Call]:
    """The `launch(...)` calls of a `queue`/`launch` chain."""
    calls = []
    node: ast.expr = chain
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "launch":
            calls.append(node)
        node = node.func.value
    return calls


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides) and any(
        isinstance(x, ast.Constant) and x.value == "__main__" for x in sides
    )


def _queue_launch_chain(statement: ast.stmt, names: dict[str, Any]) -> ast.Call | None:
    """The call of `statement` if it is `<blocks>.queue(...)`, `<blocks>.launch(...)` or a chain of them,
    `<blocks>` a module-level Gradio Blocks; else None."""
    if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)):
        return None
    node: ast.expr = statement.value
    while isinstance(node, ast.Call):
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr in MAIN_BLOCK_METHODS):
            return None
        node = func.value
    if not isinstance(node, ast.Name):
        return None
    target = names.get(node.id)
    if target is None or not type(target).__module__.startswith("gradio"):
        return None
    return statement.value


def _root(chain: ast.Call) -> ast.Name:
    """The module-level name a `queue`/`launch` chain starts from (`_queue_launch_chain` checked it is one)."""
    node: ast.expr = chain
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        node = node.func.value
    assert isinstance(node, ast.Name)
    return node


def _without_launch(call: ast.Call) -> ast.Call | None:
    """`x.queue(...)` of `x.queue(...).launch(...)` (its queue settings, when the launch cannot run)."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "launch" and isinstance(func.value, ast.Call):
        return func.value
    return None
