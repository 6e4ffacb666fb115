"""Gradio's own page for a Gradio app: the installed gradio package's built frontend (no network, no build
step), given Surge's `/config` and `/info`. Surge's visitor page stays the page of `surge.App` apps."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from gradio import route_utils
from gradio import utils as gradio_utils
from gradio.routes import templates

from surge.gradio_app import GradioApp

SESSION_SHIM = """<script>(() => {
  const long = new Map();
  const extend = (hash) => {
    if (!hash || hash.length >= 16) return hash;
    if (!long.has(hash)) {
      const bytes = crypto.getRandomValues(new Uint8Array(16));
      long.set(hash, hash + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""));
    }
    return long.get(hash);
  };
  const fixUrl = (value) => {
    const url = new URL(value, location.href);
    const hash = url.searchParams.get("session_hash");
    if (hash) url.searchParams.set("session_hash", extend(hash));
    const beat = url.pathname.match(/\\/heartbeat\\/([^/]+)$/);
    if (beat) url.pathname = url.pathname.replace(/[^/]+$/, extend(beat[1]));
    return url.toString();
  };
  const fixBody = (body) => {
    if (typeof body !== "string" || !body.includes("session_hash")) return body;
    try {
      const parsed = JSON.parse(body);
      if (parsed && typeof parsed.session_hash === "string") {
        parsed.session_hash = extend(parsed.session_hash);
        return JSON.stringify(parsed);
      }
    } catch (error) {}
    return body;
  };
  const fetchOriginal = window.fetch;
  window.fetch = (input, init) => {
    if (typeof input === "string" || input instanceof URL) input = fixUrl(String(input));
    else if (input instanceof Request && input.method === "GET") input = new Request(fixUrl(input.url), input);
    if (init && init.body) init = { ...init, body: fixBody(init.body) };
    return fetchOriginal(input, init);
  };
  const EventSourceOriginal = window.EventSource;
  window.EventSource = class extends EventSourceOriginal {
    constructor(url, options) { super(fixUrl(String(url)), options); }
  };
})();</script>"""
"""Gradio's frontend picks a session hash of about ten characters from `Math.random`; Surge takes only
unguessable ones (16+ characters, invariant I5). The page extends each hash it uses with 128 random bits
from `crypto.getRandomValues`, the same way on every request, before it leaves the browser."""

ASSETS = Path(route_utils.BUILD_PATH_LIB)
STATIC = Path(route_utils.STATIC_PATH_LIB)


def gradio_page_router(app: GradioApp, own_assets: dict[str, bytes] | None = None) -> APIRouter:
    """`/` (Gradio's index.html with the app's config inline), `/theme.css`, and the frontend's files.

    `own_assets`: Surge's own files under `/static/` (the status page's), which come first there."""
    surge_assets = own_assets or {}
    router = APIRouter(include_in_schema=False)
    _prepare_page(app.blocks)
    config = app.wire_config()
    info = app.wire_info()
    theme_css = app.blocks.theme_css

    @router.get("/")
    def page(request: Request) -> HTMLResponse:
        root = route_utils.get_root_url(request=request, route_path="/", root_path=request.scope.get("root_path"))
        context = {"base_url": "./", "config": {**config, "root": root}, "gradio_api_info": info}
        rendered = templates.TemplateResponse(request=request, name="frontend/index.html", context=context)
        html = bytes(rendered.body).decode("utf-8").replace("<head>", "<head>" + SESSION_SHIM, 1)
        return HTMLResponse(html, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    @router.get("/gradio_api/app_id")
    def app_id() -> dict[str, int]:
        return {"app_id": config["app_id"]}

    @router.get("/theme.css")
    def theme() -> PlainTextResponse:
        return PlainTextResponse(theme_css, media_type="text/css")

    @router.get("/assets/{path:path}")
    def asset(path: str) -> FileResponse:
        return FileResponse(_inside(ASSETS, path))

    @router.get("/static/{path:path}")
    def static(path: str) -> Response:
        if path in surge_assets:
            media_type = "text/css" if path.endswith(".css") else "text/javascript"
            return Response(surge_assets[path], media_type=media_type, headers={"Cache-Control": "no-cache"})
        return FileResponse(_inside(STATIC, path))

    return router


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


def _inside(folder: Path, path: str) -> Path:
    """The file `path` names inside `folder` (404 for anything else, `..` included)."""
    target = (folder / path).resolve()
    if not target.is_file() or not target.is_relative_to(folder.resolve()):
        raise HTTPException(status_code=404, detail="No such file.")
    return target
