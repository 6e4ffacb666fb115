"""The front's file routes, as Gradio names them: `POST /gradio_api/upload` stores files in S3 and answers
their names; `GET /gradio_api/file=<name>` redirects to a presigned URL, and serves the files the page's config
names by a path of the server's (examples, default values) from the app's own copies. Nothing lists files."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from surge.errors import BadRequest, NotFound, PayloadTooLarge
from surge.service import FrontService
from surge.store.files import FileStore, is_name

UPLOAD_PATH = "/gradio_api/upload"
MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""What a multipart body may carry beyond its files (boundaries, headers, form fields)."""


def upload_body_limit(service: FrontService) -> int | None:
    """The body limit of the upload route (None: the app takes no files)."""
    limit = service.app.max_file_size
    return None if limit is None or not service.settings.files_bucket_name else limit + MULTIPART_OVERHEAD_BYTES


def files_router(service: FrontService, files: FileStore | None = None) -> APIRouter:
    router = APIRouter()
    bucket = service.settings.files_bucket_name
    store = files or (FileStore(bucket) if bucket else None)
    max_file_size = service.app.max_file_size

    def taking_files() -> FileStore:
        if store is None or max_file_size is None:
            raise NotFound("This app takes no files.")
        return store

    @router.get("/gradio_api/upload_progress")
    def upload_progress(upload_id: str = "") -> Response:
        """Gradio's page follows an upload's progress here. An upload is one request that the front stores
        whole, so there is no progress to tell: the stream says done at once (a 404 logged an error)."""
        return Response('data: {"msg": "done"}\n\n', media_type="text/event-stream")

    @router.post(UPLOAD_PATH)
    async def upload(request: Request) -> list[str]:
        target = taking_files()
        form = await request.form(max_files=100, max_fields=100)
        uploads = [value for value in form.getlist("files") if isinstance(value, UploadFile)]
        if not uploads:
            raise BadRequest("Send the files as multipart form fields named 'files'.")
        _refuse_oversize(uploads, max_file_size)
        return [await run_in_threadpool(target.put, item.file, item.filename or "file") for item in uploads]

    page_files = service.app.page_files()

    @router.get("/gradio_api/file={name:path}")
    def file(name: str) -> Response:
        if name in page_files:  # an example's file, a default value: in the page's config, as Gradio serves it
            return FileResponse(page_files[name])
        target = taking_files()
        if not is_name(name):
            raise NotFound("No such file.")
        return RedirectResponse(target.url(name), status_code=302)

    return router


def _refuse_oversize(uploads: list[UploadFile], max_file_size: int | None) -> None:
    for item in uploads:
        if item.size is not None and max_file_size is not None and item.size > max_file_size:
            raise PayloadTooLarge(f"{item.filename} is {item.size} bytes; the limit is {max_file_size} bytes.")
