"""An app known by its declaration: a JSON snapshot of what the front needs (functions, queue settings,
`/config`, `/info`), written where the app's own imports are at hand. The front of a Gradio app serves
from it without importing gradio (seconds of every Lambda cold start, and a layer too large).

`python -m surge.declared module:attribute out.json [--page DIR]` writes one (the AppLayer build does, for
every app: layers/app/Makefile); `--page` also writes a Gradio app's page and gradio's frontend to DIR
(`surge.gradio_page`). `APP_DECLARATION_PATH` makes the front read the declaration instead of importing
`APP_MODULE`, and refuse one written for another app. Workers always import the app itself: they run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from surge import protocol
from surge.application import App, AppNotFound, Function, PageEvent, Parameter, file_size_limit, load_app
from surge.gradio_page import LARGEST_RESPONSE_BYTES, GradioPage
from surge.settings import Settings

VERSION = 2
RUNS_ON_WORKERS = "A declared app's functions run on workers, which import the app itself."
PAGE_FILES = "files"
"""Beside the page: copies of the files its config names (examples, default values)."""


class DeclarationMismatch(ValueError):
    """The declaration is of another app than the one `APP_MODULE` names."""


def declaration(app: App, app_module: str) -> dict[str, Any]:
    """What the front needs of `app` (loaded from `app_module`), as JSON-ready values."""
    return {
        "version": VERSION,
        "app_module": app_module,
        "page": None,
        "gradio": app.wire_config() is not None,
        "title": app.title,
        "max_size": app.max_size,
        "default_concurrency_limit": app.default_concurrency_limit,
        "max_threads": app.max_threads,
        "max_wait_s": app.max_wait_s,
        "show_error": app.show_error,
        "api_open": app.api_open,
        "unqueued": sorted(app.unqueued, key=str),
        "unserved": {str(fn_index): why for fn_index, why in app.unserved.items()},
        "max_file_size": app.max_file_size,
        "config": protocol.config(app),
        "info": protocol.info(app),
        "functions": [
            {
                "fn_index": f.fn_index,
                "api_name": f.api_name,
                "inputs": f.inputs,
                "outputs": f.outputs,
                "batch": f.batch,
                "max_batch_size": f.max_batch_size,
                "concurrency_limit": f.concurrency_limit,
                "concurrency_id": f.concurrency_id,
                "batch_wait_ms": f.batch_wait_ms,
                "time_limit_s": f.time_limit_s,
                "eta_hint_s": f.eta_hint_s,
                "parameters": [vars(p) for p in f.parameters],
                "generator": f.is_generator,
                "progress": f.progress_arg is not None,
                "events": (
                    None
                    if f.events is None
                    else {str(i): [e.inputs, e.outputs, e.streams] for i, e in f.events.items()}
                ),
            }
            for f in app.functions
        ],
    }


def _runs_elsewhere(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(RUNS_ON_WORKERS)


def _streams_elsewhere(*args: Any, **kwargs: Any) -> Iterator[Any]:
    raise RuntimeError(RUNS_ON_WORKERS)
    yield


class DeclaredApp(App):
    """The front's view of an app from its declaration: same functions, settings, config and info."""

    def __init__(self, declared: dict[str, Any], settings: Settings | None = None, folder: Path | None = None) -> None:
        """`folder`: where the declaration lies (its page is named relative to it)."""
        if declared.get("version") != VERSION:
            raise ValueError(f"app declaration version {declared.get('version')!r}; this Surge reads {VERSION}")
        if settings is not None and declared["app_module"] != settings.app_module:
            raise DeclarationMismatch(
                f"the app declaration {settings.app_declaration_path} is of APP_MODULE={declared['app_module']}, "
                f"but APP_MODULE is {settings.app_module}: build the AppLayer for this app "
                f"(APP_MODULE={settings.app_module} sam build) or deploy with AppModule={declared['app_module']}"
            )
        super().__init__(
            title=declared["title"],
            max_size=declared["max_size"],
            default_concurrency_limit=declared["default_concurrency_limit"],
            max_threads=declared["max_threads"],
            max_wait_s=declared["max_wait_s"],
            show_error=declared["show_error"],
        )
        self.gradio: bool = declared["gradio"]
        """A Gradio app: `/config` and `/info` are the declared ones (Surge writes a surge.App's itself)."""
        self.max_file_size = declared["max_file_size"]
        self.api_open = declared.get("api_open", True)
        self.unqueued = set(declared.get("unqueued", []))
        self.unserved = {int(fn_index): why for fn_index, why in declared.get("unserved", {}).items()}
        if self.gradio and self.max_file_size is None and settings is not None:
            self.max_file_size = settings.max_file_size_bytes  # no limit of its own: the deployment's
        self.max_file_size = file_size_limit(self.max_file_size, settings)
        self._config = {**declared["config"], "max_file_size": self.max_file_size}
        self._info = declared["info"]
        self.functions = [_function(f) for f in declared["functions"]]
        self.page_folder = (folder or Path()) / declared["page"] if declared["page"] is not None else None
        """Gradio's page as the build wrote it (`GradioPage.write`); None: no page at `/`."""
        self._page_files = {path: (folder or Path()) / copy for path, copy in declared.get("page_files", {}).items()}

    def wire_config(self) -> dict[str, Any] | None:
        return self._config if self.gradio else None

    def wire_info(self) -> dict[str, Any] | None:
        return self._info if self.gradio else None

    def gradio_page(self) -> GradioPage | None:
        return GradioPage.load(self.page_folder) if self.page_folder is not None else None

    def page_files(self) -> dict[str, Path]:
        return self._page_files


def _function(declared: dict[str, Any]) -> Function:
    return Function(
        fn=_streams_elsewhere if declared["generator"] else _runs_elsewhere,
        fn_index=declared["fn_index"],
        api_name=declared["api_name"],
        inputs=declared["inputs"],
        outputs=declared["outputs"],
        batch=declared["batch"],
        max_batch_size=declared["max_batch_size"],
        concurrency_limit=declared["concurrency_limit"],
        concurrency_id=declared["concurrency_id"],
        batch_wait_ms=declared["batch_wait_ms"],
        time_limit_s=declared["time_limit_s"],
        eta_hint_s=declared["eta_hint_s"],
        parameters=[Parameter(**p) for p in declared["parameters"]],
        progress_arg="progress" if declared["progress"] else None,
        events=(
            None
            if declared.get("events") is None
            else {int(i): PageEvent(*shape) for i, shape in declared["events"].items()}
        ),
    )


def _copy_page_files(files: dict[str, Path], into: Path, base: Path) -> dict[str, str]:
    """Copy the files the page's config names (examples, default values) beside the page, for the front
    to serve by the path the config gives them; path → the copy, relative to `base`."""
    copied: dict[str, str] = {}
    for number, (path, local) in enumerate(sorted(files.items())):
        if local.stat().st_size > LARGEST_RESPONSE_BYTES:
            print(f"{path}: left out of the page's files, larger than a Lambda response can carry")
            continue
        target = into / str(number) / local.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
        copied[path] = os.path.relpath(target, base)
    return copied


def load_declared(path: str, settings: Settings | None = None) -> DeclaredApp:
    declared = Path(path)
    return DeclaredApp(json.loads(declared.read_text(encoding="utf-8")), settings, folder=declared.parent)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the declaration of an app for its front.")
    parser.add_argument("app", help="module:attribute, as APP_MODULE")
    parser.add_argument("out", help="the JSON file to write")
    parser.add_argument("--page", help="a folder for a Gradio app's page and gradio's frontend (nothing otherwise)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        app = load_app(args.app)
    except (AppNotFound, ValueError) as error:  # the Gradio adapter's refusals are ValueErrors naming the event
        print(f"surge: {error}", file=sys.stderr)  # one line naming the cause, as make run says it
        raise SystemExit(2) from None
    declared = declaration(app, args.app)  # before the page: rendering it sets the theme, as in a live front
    page = app.gradio_page() if args.page else None
    if page is not None:
        for path in page.write(Path(args.page)):
            print(f"{path}: left out of the page, larger than a Lambda response can carry")
        declared["page"] = os.path.relpath(args.page, out.parent)
        declared["page_files"] = _copy_page_files(app.page_files(), Path(args.page) / PAGE_FILES, out.parent)
    out.write_text(json.dumps(declared, separators=(",", ":")), encoding="utf-8")


if __name__ == "__main__":
    main()
