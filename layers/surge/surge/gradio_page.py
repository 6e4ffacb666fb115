"""Gradio's own page for a Gradio app, served without importing gradio: `index.html` as gradio's own Jinja
template rendered it for the app (with `ROOT_PLACEHOLDER` where the page's root URL goes), a multipage app's
other pages (`/<route>`) rendered alike, `theme.css`, and gradio's built frontend (`assets/`, `static/`),
given Surge's `/config` and `/info`.

A live Gradio app renders its page at start (`GradioApp.gradio_page`, from the installed gradio); a declared
one reads the page the AppLayer build wrote beside its declaration (`python -m surge.declared ... --page`).
Both are served by `gradio_page_router`. Surge's visitor page stays the page of `surge.App` apps."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.datastructures import URL

ROOT_PLACEHOLDER = "__surge_root_url__"
"""The page's `config.root` at render time; each request gets its own root URL in its place."""
INDEX, THEME, ASSETS, STATIC, PAGES = "index.html", "theme.css", "assets", "static", "pages"
LARGEST_RESPONSE_BYTES = 6 * 1024 * 1024
"""A buffered Lambda response's limit: a written page leaves out the frontend's files above it (gradio 6.31:
only `static/ffmpeg/ffmpeg-core.wasm`, 32 MB, which the page loads only to trim a `gr.Video`)."""

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
"""Gradio's frontend picks a session hash of about ten characters from `Math.random`. Surge accepts it (8+
characters, as `@gradio/client` sends too), but a visitor of Surge's front gets an unguessable one (invariant
I5): the page extends each hash shorter than 16 characters with 128 random bits from `crypto.getRandomValues`,
the same way on every request, before it leaves the browser."""


@dataclass(frozen=True)
class GradioPage:
    """What Gradio's page is made of: the rendered `index.html` (root URL left as `ROOT_PLACEHOLDER`), the
    theme's CSS, and the folders of gradio's built frontend."""

    index_html: str
    theme_css: str
    assets: Path
    static: Path
    pages: Mapping[str, str] = field(default_factory=dict)
    """A multipage app's other pages by route (`second` for `/second`), rendered as `index_html` is."""

    @classmethod
    def load(cls, folder: Path) -> GradioPage:
        """The page `write` left in `folder`."""
        others = folder / PAGES
        return cls(
            index_html=(folder / INDEX).read_text(encoding="utf-8"),
            theme_css=(folder / THEME).read_text(encoding="utf-8"),
            assets=folder / ASSETS,
            static=folder / STATIC,
            pages={p.stem: p.read_text(encoding="utf-8") for p in sorted(others.glob("*.html"))}
            if others.is_dir()
            else {},
        )

    def write(self, folder: Path) -> list[Path]:
        """The page and a copy of the frontend in `folder`, for a front that has no gradio to read them from;
        returns the files left out (over `LARGEST_RESPONSE_BYTES`), as paths inside `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INDEX).write_text(self.index_html, encoding="utf-8")
        (folder / THEME).write_text(self.theme_css, encoding="utf-8")
        if self.pages:
            (folder / PAGES).mkdir(exist_ok=True)
            for route, html in self.pages.items():
                (folder / PAGES / f"{route}.html").write_text(html, encoding="utf-8")
        left_out: list[Path] = []
        for source, name in ((self.assets, ASSETS), (self.static, STATIC)):

            def too_large(directory: str, names: list[str], source: Path = source, name: str = name) -> set[str]:
                paths = [Path(directory) / entry for entry in sorted(names)]
                large = [path for path in paths if path.is_file() and path.stat().st_size > LARGEST_RESPONSE_BYTES]
                left_out.extend(name / path.relative_to(source) for path in large)
                return {path.name for path in large}

            shutil.copytree(source, folder / name, dirs_exist_ok=True, ignore=too_large)
        return left_out


def root_url(request: Request, route_path: str = "/") -> str:
    """The app's public URL without a trailing slash, resolved as `gradio.route_utils.get_root_url(request,
    route_path, root_path)` resolves it: a full-URL `root_path` as is; else `X-Forwarded-Host` (or
    `X-Gradio-Server`, or the request's URL less `route_path`, the route that `request` came to) without its
    query, https when `X-Forwarded-Proto` says so, and a relative `root_path` as the path."""
    root_path = _mount_path(request)
    if root_path.startswith(("http://", "https://")):
        return str(root_path).rstrip("/")
    forwarded_host = _first_value(request, "x-forwarded-host")
    origin = f"http://{forwarded_host}" if forwarded_host else _first_value(request, "x-gradio-server") or request.url
    root = str(URL(str(origin)).replace(query="")).rstrip("/")
    if _first_value(request, "x-forwarded-proto") == "https":
        root = root.replace("http://", "https://")
    route = route_path.rstrip("/")
    if route and not forwarded_host and root.endswith(route):
        root = root[: -len(route)].rstrip("/")
    url = URL(root)
    if root_path and url.path != root_path:
        root = str(url.replace(path=root_path))
    return root.rstrip("/")


def _mount_path(request: Request) -> str:
    """Gradio's `root_path`: the ASGI one, else under API Gateway the part of the path the client asked for
    that the route does not cover (the stage, `/live`, or a custom domain's base path): Mangum strips it from
    the path and leaves `root_path` empty."""
    root_path = str(request.scope.get("root_path") or "")
    event = request.scope.get("aws.event")
    if root_path or not isinstance(event, dict):
        return root_path
    asked, path = (event.get("requestContext") or {}).get("path"), event.get("path")
    if isinstance(asked, str) and isinstance(path, str) and path and asked.endswith(path):
        return asked[: -len(path)].rstrip("/")
    return ""


def _first_value(request: Request, header: str) -> str | None:
    value = request.headers.get(header)
    return value.split(",")[0].strip() if value else None


def _inline_json(value: str) -> str:
    """`value` as gradio's `toorjson` filter writes it into the page: JSON, safe inside `<script>`."""
    encoded = json.dumps(value)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        encoded = encoded.replace(char, escape)
    return encoded


def gradio_page_router(
    page: GradioPage, app_id: int, own_assets: dict[str, bytes] | None = None, title: str = "Gradio"
) -> APIRouter:
    """`/` (Gradio's index.html with the app's config inline), `/theme.css`, `/gradio_api/app_id`,
    `/manifest.json`, `/favicon.ico`, and the frontend's files.

    `own_assets`: Surge's own files under `/static/` (the status page's), which come first there."""
    surge_assets = own_assets or {}
    router = APIRouter(include_in_schema=False)
    placeholder = _inline_json(ROOT_PLACEHOLDER)
    if placeholder not in page.index_html:
        raise ValueError(f"Gradio's page has no {ROOT_PLACEHOLDER!r} where its root URL goes: render it again.")
    icon = {"src": "static/img/logo_nosize.svg", "sizes": "any", "type": "image/svg+xml", "purpose": "any"}
    manifest_json = json.dumps({"name": title, "icons": [icon], "start_url": "./", "display": "standalone"})

    for route, page_html in {"": page.index_html, **page.pages}.items():
        _attach_page(router, route, page_html.replace("<head>", "<head>" + SESSION_SHIM, 1))

    @router.get("/gradio_api/app_id")
    def app_id_route() -> dict[str, int]:
        return {"app_id": app_id}

    @router.get("/theme.css")
    def theme() -> PlainTextResponse:
        return PlainTextResponse(page.theme_css, media_type="text/css")

    @router.get("/manifest.json")
    def manifest() -> Response:
        """The web app manifest the page links, as Gradio's with no favicon set (a 404 logged an error)."""
        return Response(manifest_json, media_type="application/manifest+json")

    @router.get("/favicon.ico")
    def favicon() -> FileResponse:
        """Gradio's own icon, as Gradio serves it when `launch(favicon_path=)` is not set (the browser
        asks for it on every page: a 404 left the tab without an icon and an error in the console)."""
        return FileResponse(_inside(page.static, "img/logo.svg"), media_type="image/svg+xml")

    @router.get("/assets/{path:path}")
    def asset(path: str) -> FileResponse:
        return FileResponse(_inside(page.assets, path))

    @router.get("/static/{path:path}")
    def static(path: str) -> Response:
        if path in surge_assets:
            media_type = "text/css" if path.endswith(".css") else "text/javascript"
            return Response(surge_assets[path], media_type=media_type, headers={"Cache-Control": "no-cache"})
        return FileResponse(_inside(page.static, path))

    return router


def _served(page_html: str, root: str) -> HTMLResponse:
    """A rendered page with its root URL: as a value of its own, then inside the API info's code snippets
    (a string's escapes)."""
    placeholder = _inline_json(ROOT_PLACEHOLDER)
    html = page_html.replace(placeholder, _inline_json(root)).replace(ROOT_PLACEHOLDER, _inline_json(root)[1:-1])
    return HTMLResponse(html, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def _attach_page(router: APIRouter, route: str, page_html: str) -> None:
    """The page at `/`, or a multipage app's other page at `/<route>`, as Gradio serves it; `/<route>/`
    leads there (relative, so a stage or base path in front of the app stays)."""

    @router.get(f"/{route}")
    @router.head(f"/{route}", include_in_schema=False)  # as Gradio: uptime monitors probe with HEAD
    def page(request: Request) -> HTMLResponse:
        return _served(page_html, root_url(request, f"/{route}"))

    if route:

        @router.get(f"/{route}/")
        def page_slash() -> RedirectResponse:
            return RedirectResponse(f"../{route}", status_code=301)


def _inside(folder: Path, path: str) -> Path:
    """The file `path` names inside `folder` (404 for anything else, `..` included)."""
    target = (folder / path).resolve()
    if not target.is_file() or not target.is_relative_to(folder.resolve()):
        raise HTTPException(status_code=404, detail="No such file.")
    return target
