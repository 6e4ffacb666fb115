"""Files of a Gradio app through S3 (moto in-process): the worker side fetches inputs by name and stores
outputs under new names; the front's routes upload, refuse oversize bodies and redirect to presigned URLs."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import numpy as np
import pytest
import safehttpx
from fastapi.testclient import TestClient
from gradio import processing_utils
from PIL import Image

from surge.application import CALLS, Call, load_app
from surge.errors import Error
from surge.front import create_api_app
from surge.gradio_app import GradioApp
from surge.models import Caller
from surge.store.files import FileStore, is_name
from surge.wiring import build_front
from tests.integration.conftest import settings_for

SPEC = "examples.gradio_image_app:demo"


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_the_worker_fetches_the_named_input_and_stores_the_output(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    written: list[Path] = []
    save = processing_utils.save_img_array_to_cache

    def save_and_note(*args: Any, **kwargs: Any) -> str:
        path: str = save(*args, **kwargs)
        written.append(Path(path))
        return path

    monkeypatch.setattr(processing_utils, "save_img_array_to_cache", save_and_note)
    settings = settings_for(SPEC)
    app = load_app(SPEC, settings)
    assert isinstance(app, GradioApp) and app.files is not None
    for block in app.blocks.blocks.values():
        monkeypatch.setattr(block, "GRADIO_CACHE", str(tmp_path), raising=False)
    pixels = np.full((8, 8, 3), 200, dtype=np.uint8)
    name = app.files.put(io.BytesIO(_png(pixels)), "grey.png")
    output = app.get("sepia").fn({"path": name, "meta": {"_type": "gradio.FileData"}}, 1.0)
    assert is_name(output["path"]) and output["url"] == f"gradio_api/file={output['path']}"
    stored = app.files.client.get_object(Bucket=settings.files_bucket_name, Key="files/" + output["path"][6:])
    toned = np.asarray(Image.open(io.BytesIO(stored["Body"].read())))
    assert toned.shape == (8, 8, 3) and toned[0, 0, 0] > toned[0, 0, 2], "sepia makes red exceed blue"
    assert written and all(path.is_relative_to(tmp_path) for path in written), "Gradio cached the output here"
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "inputs and Gradio's cached outputs are removed"


def test_an_output_files_url_starts_with_the_root_url_its_join_came_to(aws: None) -> None:
    """As Gradio's: a client outside a browser (`@gradio/client` in Node) fetches the URL as it is."""
    app = load_app(SPEC, settings_for(SPEC))
    assert isinstance(app, GradioApp) and app.files is not None
    name = app.files.put(io.BytesIO(_png(np.full((8, 8, 3), 200, dtype=np.uint8))), "grey.png")
    caller = Caller(url="https://demo.example/live/gradio_api/queue/join", root_url="https://demo.example/live")
    token = CALLS.set((Call(session_hash="s" * 16, caller=caller),))
    try:
        output = app.get("sepia").fn({"path": name, "meta": {"_type": "gradio.FileData"}}, 1.0)
    finally:
        CALLS.reset(token)
    assert output["url"] == f"https://demo.example/live/gradio_api/file={output['path']}"


def test_a_path_that_names_no_upload_is_refused(aws: None) -> None:
    app = load_app(SPEC, settings_for(SPEC))
    for path in ("/etc/passwd", "surge/short/a.png", "ftp://example.com/a.png"):
        with pytest.raises(Error, match="must first be uploaded"):
            app.get("sepia").fn({"path": path, "meta": {"_type": "gradio.FileData"}}, 1.0)


def test_an_input_given_by_a_public_url_is_downloaded_as_gradio_downloads_it(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`handle_file("https://...")` (Gradio's docs call their examples so): Gradio downloads the file; it was
    refused here. No network here: Gradio's own download runs over a transport that answers for the host
    (the only stand-in), after its address check, which a private address fails as on Gradio."""
    app = load_app(SPEC, settings_for(SPEC, max_file_size_bytes=5000))
    red = _png(np.full((8, 8, 3), (200, 40, 40), dtype=np.uint8))
    asked: list[str] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1000):
            yield b"x" * 4000  # 4 MB, unless the download stops first
        asked.append("read whole")

    async def serve(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.path.endswith("/big.png"):
            return httpx.Response(200, content=endless())
        if request.url.path.endswith("/moved.png"):
            return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data"})
        return httpx.Response(200, content=red) if request.url.path.endswith("/red.png") else httpx.Response(404)

    def call(url: str) -> Any:
        return app.get("sepia").fn({"path": url, "meta": {"_type": "gradio.FileData"}}, 0.0)

    async def nothing_more(hostname: str) -> list[str]:
        return []  # the guard's second opinion (Google's DNS over HTTPS): no network here

    monkeypatch.setattr(safehttpx, "async_resolve_hostname_google", nothing_more)
    for address in ("http://169.254.169.254/latest/meta-data", "http://127.0.0.1:9/a.png", "http://10.0.0.1/a.png"):
        with pytest.raises(Error, match=r"Could not fetch the input file .*failed validation"):
            call(address)  # the instance's metadata, this machine, a private network: never asked
    monkeypatch.setattr(processing_utils, "async_transport", httpx.MockTransport(serve))
    output = call("https://huggingface.co/datasets/surge/red.png")
    assert asked == ["https://huggingface.co/datasets/surge/red.png"]
    stored = app.files.client.get_object(Bucket=app.files.bucket, Key="files/" + output["path"][6:])  # type: ignore[union-attr]
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(stored["Body"].read()))), np.asarray(Image.open(io.BytesIO(red)))
    )
    with pytest.raises(Error, match=r"Could not fetch .*Status code: 404"):
        call("https://huggingface.co/datasets/surge/gone.png")
    with pytest.raises(Error, match="larger than this app's limit of 5000 bytes"):
        call("https://huggingface.co/datasets/surge/big.png")  # stopped while it streams, not read whole
    assert "https://huggingface.co/datasets/surge/big.png" in asked and "read whole" not in asked
    with pytest.raises(Error, match="failed validation"):
        call("https://huggingface.co/datasets/surge/moved.png")  # a redirect is checked as the first address


def test_upload_route_stores_names_redirects_and_refuses_oversize(aws: None) -> None:
    settings = settings_for(SPEC, max_file_size_bytes=1000)
    client = TestClient(create_api_app(build_front(settings)))
    names = client.post("/gradio_api/upload", files=[("files", ("a.txt", b"hello"))]).json()
    assert len(names) == 1 and is_name(names[0])
    redirect = client.get(f"/gradio_api/file={names[0]}", follow_redirects=False)
    assert redirect.status_code == 302
    assert httpx.URL(redirect.headers["location"]).params.get("X-Amz-Expires") == "900"
    body = (
        FileStore(settings.files_bucket_name)
        .client.get_object(Bucket=settings.files_bucket_name, Key="files/" + names[0][6:])["Body"]
        .read()
    )
    assert body == b"hello"
    too_big = client.post("/gradio_api/upload", files=[("files", ("big.bin", b"x" * 1001))])
    assert too_big.status_code == 413
    assert client.get("/gradio_api/file=surge/../../secret", follow_redirects=False).status_code == 404
    assert client.get("/config").json()["max_file_size"] == 1000


def test_gradio_page_at_root_and_the_status_page_keeps_its_assets(aws: None) -> None:
    client = TestClient(create_api_app(build_front(settings_for(SPEC))))
    page = client.get("/")
    assert page.status_code == 200 and "window.gradio_config" in page.text and "crypto.getRandomValues" in page.text
    probe = client.head("/")  # as Gradio: uptime monitors and load balancers probe the page with HEAD
    assert probe.status_code == 200 and probe.headers["content-type"].startswith("text/html") and not probe.content
    assert client.get("/status").status_code == 200
    assert "function" in client.get("/static/status.js").text
    assert client.get("/static/fonts/../../index.html").status_code == 404
    assert client.get("/theme.css").headers["content-type"].startswith("text/css")


def test_an_examples_file_survives_the_calls_that_return_it(aws: None, tmp_path: Path) -> None:
    """Gradio copies an example's file into its cache at start, and each click on the example reads it
    there. The worker removed every cache copy it stored in S3, the example's too: the next click failed
    (FileNotFoundError), and every other process sharing the cache folder lost the file."""
    picture = tmp_path / "cat.png"
    picture.write_bytes(_png(np.full((8, 8, 3), 255, dtype=np.uint8)))
    demo = gr.Interface(lambda path: path, gr.Image(type="filepath"), gr.Image(), examples=[[str(picture)]])
    app = GradioApp(demo, settings_for(SPEC))
    load_example = next(i for i, fn in demo.fns.items() if fn.name == "load_example")
    lane = app.get("page_events")
    shown = [lane.fn(load_example, 0) for _ in range(2)]  # the visitor clicks the example twice
    for (update,) in shown:  # the input image, set to the example (a component update)
        value = update["value"]
        assert is_name(value["path"]) and value["url"] == f"gradio_api/file={value['path']}"
    ((sample,),) = demo.examples_handler.dataset.samples  # type: ignore[attr-defined]
    assert Path(sample["path"]).is_file(), "the cache copy is still there"


def _page_file_paths(config: dict[str, Any]) -> tuple[str, str]:
    """The default value's and the example's paths, as the page's config gives them."""
    (image,) = [c for c in config["components"] if c["type"] == "image"]
    (dataset,) = [c for c in config["components"] if c["type"] == "dataset"]
    return image["props"]["value"]["path"], dataset["props"]["samples"][0][0]["path"]


@pytest.mark.parametrize("declared", [False, True])
def test_an_examples_file_and_a_default_value_are_served_as_the_page_names_them_and_taken_as_inputs(
    aws: None, tmp_path: Path, declared: bool
) -> None:
    """Gradio's config names an example's file and a component's default value by its cache path, which
    Gradio serves and takes back as an input. Surge answered 404 (the page's example thumbnails were
    broken) and refused the default value as an input that was never uploaded."""
    spec = "tests.apps.gradio_apps:described"
    settings = settings_for(spec)
    if declared:  # a deployed front serves the files the build copied beside the page
        from surge.declared import main

        main([spec, str(tmp_path / "app.json"), "--page", str(tmp_path / "page")])
        settings = settings.model_copy(update={"app_declaration_path": str(tmp_path / "app.json")})
    client = TestClient(create_api_app(build_front(settings)))
    default, example = _page_file_paths(client.get("/config").json())
    for path in (default, example):
        served = client.get(f"/gradio_api/file={path}")
        assert served.status_code == 200 and served.content == Path(path).read_bytes()
    assert client.get("/gradio_api/file=/etc/passwd").status_code == 404, "only what the config names"
    function = load_app(spec, settings_for(spec)).get("describe")
    assert function.fn({"path": default, "meta": {"_type": "gradio.FileData"}}) == (
        f"shade40.png: {Path(default).stat().st_size} bytes"
    )


@pytest.mark.parametrize("declared", [False, True])
def test_an_icon_of_gradios_own_that_the_config_names_is_served(aws: None, tmp_path: Path, declared: bool) -> None:
    """`ChatInterface(save_history=True)`'s "New chat" button names `gradio/icons/plus.svg`, which Gradio
    serves; Surge answered 404 and the page showed a broken image."""
    spec = "tests.apps.gradio_apps:remembered_chat"
    settings = settings_for(spec)
    if declared:
        from surge.declared import main

        main([spec, str(tmp_path / "app.json"), "--page", str(tmp_path / "page")])
        settings = settings.model_copy(update={"app_declaration_path": str(tmp_path / "app.json")})
    client = TestClient(create_api_app(build_front(settings)))
    text = json.dumps(client.get("/config").json())
    (icon,) = {m for m in re.findall(r'"path": "([^"]+\.svg)"', text) if m.endswith("/icons/plus.svg")}
    served = client.get(f"/gradio_api/file={icon}")
    assert served.status_code == 200 and served.content == Path(icon).read_bytes()
    package = Path(icon).parent.parent
    assert client.get(f"/gradio_api/file={package / 'icons' / 'link.svg'}").status_code == 404, "only what it names"


def test_a_state_keeping_the_same_file_under_another_name_is_no_change(aws: None) -> None:
    """Gradio names its copy of a file by its contents, so a state holding the same file again is unchanged
    and its `.change` listeners do not run. Each copy here has a name of its own: a multimodal chat's
    history, written back from the chatbot, counted as changed at every step, its listener re-rendered the
    chatbot under new names, which wrote the history again: the page joined without end."""
    spec = "tests.apps.gradio_apps:file_history"
    app = load_app(spec, settings_for(spec))
    assert isinstance(app, GradioApp) and app.files is not None and app.states is not None
    (state_id,) = [b._id for b in app.blocks.blocks.values() if isinstance(b, gr.State)]
    uploads = [app.files.put(io.BytesIO(body), "img0.png") for body in (b"one", b"one", b"two")]
    changed = []
    for name in [*uploads[:2], uploads[1], uploads[2]]:
        call = Call(session_hash="h" * 16, caller=None)
        token = CALLS.set((call,))
        try:
            app.get("keep").fn({"path": name, "meta": {"_type": "gradio.FileData"}})
        finally:
            CALLS.reset(token)
        changed.append(call.output["changed_state_ids"])
    assert changed == [[state_id], [], [], [state_id]], "the same contents under another name: no change"
