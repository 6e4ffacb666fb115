"""Browser pages of the front: the visitor page at `/` (Gradio's own for a Gradio app), the operator page at
`/status`, and its JSON.

The pages are plain HTML/CSS/JS from `static/` (no build step) that speak the same public protocol as
every client (`/config`, `queue/join`, the session's `queue/data` stream). Their URLs are relative, so
they work under an API Gateway stage path such as `/Prod/`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import HTMLResponse

from surge.service import FrontService
from surge.status import StatusBoard, StatusSnapshot

STATUS_PATH = "/gradio_api/surge/status"
STATIC_DIR = Path(__file__).parent / "static"
ASSET_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
NO_CACHE = {"Cache-Control": "no-cache"}


@dataclass(frozen=True)
class Page:
    """An HTML page with its Content-Security-Policy (its inline scripts allowed by hash, nothing else)."""

    html: str
    csp: str

    @classmethod
    def load(cls, name: str, values: dict[str, str]) -> Page:
        html = (STATIC_DIR / name).read_text(encoding="utf-8")
        for key, value in values.items():
            html = html.replace("{{" + key + "}}", value)
        hashes = [
            "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
            for script in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
        ]
        csp = "; ".join(
            [
                "default-src 'self'",
                "script-src 'self' " + " ".join(hashes),
                "style-src 'self'",
                "img-src 'self' data: blob: https:",
                "connect-src 'self'",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            ]
        )
        return cls(html=html, csp=csp)

    def response(self) -> HTMLResponse:
        return HTMLResponse(
            self.html, headers={**NO_CACHE, "Content-Security-Policy": self.csp, "X-Content-Type-Options": "nosniff"}
        )


def _own_assets() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in STATIC_DIR.iterdir() if path.suffix in ASSET_TYPES}


def pages_router(service: FrontService) -> APIRouter:
    """`/`, `/status`, their assets under `/static/`, and the status JSON, for `service`'s app."""
    router = APIRouter(include_in_schema=False)
    gradio = service.app.wire_config() is not None
    gradio_page = service.app.gradio_page()  # rendered by gradio (a live app) or read from the build (declared)
    if gradio_page is not None:  # Gradio's own page at `/`, before Surge's
        from surge.gradio_page import gradio_page_router

        router.include_router(
            gradio_page_router(
                gradio_page, service.config["app_id"], own_assets=_own_assets(), title=service.app.title or "Gradio"
            )
        )
    board = StatusBoard(service.app, service.store)
    visitor = Page.load("visitor.html", {"max_payload_bytes": str(service.settings.max_payload_bytes)})
    operator = Page.load("status.html", {})
    assets = _own_assets()

    if not gradio:  # Surge's page speaks Surge's config; a Gradio app declared without its page has none

        @router.get("/")
        @router.head("/", include_in_schema=False)  # uptime monitors probe with HEAD, as with Gradio
        def visitor_page() -> HTMLResponse:
            return visitor.response()

    @router.get("/status")
    def status_page() -> HTMLResponse:
        return operator.response()

    @router.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in assets:
            raise HTTPException(status_code=404, detail="No such asset.")
        return Response(assets[name], media_type=ASSET_TYPES[Path(name).suffix], headers=NO_CACHE)

    @router.get(STATUS_PATH)
    def status() -> Response:
        snapshot: StatusSnapshot = board.snapshot()
        return Response(
            snapshot.model_dump_json(), media_type="application/json", headers={"Cache-Control": "no-store"}
        )

    return router
