"""The AppLayer as `sam build` makes it (layers/app/Makefile, run for real into a temporary folder), and a
front that serves a Gradio app from that output alone, in a process where importing gradio or the app fails."""

from __future__ import annotations

import json
import mimetypes
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from examples.gradio_image_app import SEPIA
from surge.gradio_page import LARGEST_RESPONSE_BYTES
from surge_local.launcher import LocalStack, free_port
from tests.apps.gradio_apps import photo
from tests.template.stack import ROOT, TEMPLATE, load

pytestmark = pytest.mark.crossprocess

SPEC = "examples.gradio_image_app:demo"
BLOCKER = '''"""Makes importing the modules named in SURGE_BLOCKED_IMPORTS fail in this process (a test's front)."""
import os
import sys

BLOCKED = tuple(os.environ.get("SURGE_BLOCKED_IMPORTS", "").split(","))


class Blocked:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if any(name == top or name.startswith(top + ".") for top in BLOCKED if top):
            raise ImportError(f"import of {name} is blocked in this process")
        return None


sys.meta_path.insert(0, Blocked)
'''


def build(artifacts: Path, app_module: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    makefile = ROOT / "layers/app/Makefile"
    argv = ["make", "--no-print-directory", "-f", str(makefile), "build-AppLayer", f"ARTIFACTS_DIR={artifacts}"]
    argv += [f"APP_MODULE={app_module}", f"APP_PYTHON={python}"]
    return subprocess.run(argv, cwd=artifacts, capture_output=True, text=True, timeout=120)


def declaration_in(layer: Path) -> Path:
    """Where APP_DECLARATION_PATH (template.yaml, under /opt) points inside the built layer."""
    deployed = load(TEMPLATE)["Mappings"]["AppLayer"]["Paths"]["Declaration"]
    return layer / Path(deployed).relative_to("/opt")


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    artifacts = tmp_path_factory.mktemp("AppLayer")
    built = build(artifacts, SPEC)
    assert built.returncode == 0, built.stderr
    return artifacts


def test_a_gradio_apps_layer_holds_its_declaration_page_and_gradios_frontend(layer: Path) -> None:
    declared = json.loads(declaration_in(layer).read_text())
    assert (declared["app_module"], declared["gradio"], declared["page"]) == (SPEC, True, "page")
    page = declaration_in(layer).parent / "page"
    assert {p.name for p in page.iterdir()} == {"index.html", "theme.css", "assets", "static"}
    assert re.search(r'src="\./assets/index-[\w-]+\.js"', (page / "index.html").read_text())
    assert (layer / "python/examples/gradio_image_app.py").is_file()
    assert not list(layer.rglob("__pycache__"))
    size_mb = sum(p.stat().st_size for p in layer.rglob("*") if p.is_file()) / 1e6
    assert 10 < size_mb < 60, size_mb  # gradio's frontend is most of it; Lambda: 250 MB with the core layer


def test_every_file_of_the_page_fits_a_lambda_response_and_binary_ones_pass_api_gateway(layer: Path) -> None:
    """Mangum sends text (text/*, JSON, JavaScript) as is and base64-encodes the rest, which API Gateway
    decodes only where the request's first Accept value (a browser's is seldom the file's own type) or the
    type matches the API's BinaryMediaTypes: every file of the page, and an app's example image, audio
    and video, whatever the browser asks first."""
    from fnmatch import fnmatch

    api = load(TEMPLATE)["Resources"]["SurgeApi"]["Properties"]
    binary = [media_type.replace("~1", "/") for media_type in api["BinaryMediaTypes"]]
    files = [p for p in (declaration_in(layer).parent / "page").rglob("*") if p.is_file()]
    assert len(files) > 100 and max(p.stat().st_size for p in files) <= LARGEST_RESPONSE_BYTES
    examples = ["cat.jpg", "cat.webp", "clip.wav", "clip.mp3", "clip.mp4", "doc.pdf"]
    chrome_asks_first = ["image/avif", "text/html", "*/*"]  # an <img>, a navigation, a font or a fetch
    for name in [str(path) for path in files] + examples:
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        text = media_type.startswith("text/") or media_type in ("application/json", "application/javascript")
        assert text or all(any(fnmatch(asked, kind) for kind in binary) for asked in chrome_asks_first), name


def test_a_surge_apps_layer_holds_its_declaration_and_no_page(tmp_path: Path) -> None:
    built = build(tmp_path, "examples.demo_app:app")
    assert built.returncode == 0, built.stderr
    declared = json.loads(declaration_in(tmp_path).read_text())
    assert (declared["app_module"], declared["gradio"], declared["page"]) == ("examples.demo_app:app", False, None)
    assert [p.name for p in declaration_in(tmp_path).parent.iterdir()] == ["app.json"]


def test_a_build_whose_python_cannot_import_the_app_fails_in_one_line_saying_what_to_do(tmp_path: Path) -> None:
    built = build(tmp_path, "examples.no_such_module:app")
    assert built.returncode != 0
    (line,) = [line for line in built.stderr.splitlines() if line.startswith("AppLayer:")]
    assert f"{sys.executable} cannot declare APP_MODULE=examples.no_such_module:app (" in line
    assert "no module 'examples.no_such_module'" in line
    assert line.endswith(
        "run make .venv/.installed once to create .venv (make run and make test do too), "
        "or set APP_PYTHON=/path/to/python"
    )


def test_a_front_from_the_layer_alone_serves_gradios_page_and_the_app_without_gradio(
    layer: Path, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    front_path = (tmp_path, layer / "python", ROOT / "layers/surge", ROOT / "local")  # the blocker, the layer, the core
    front_env = {
        "PYTHONPATH": os.pathsep.join(str(p) for p in front_path),
        "SURGE_BLOCKED_IMPORTS": "gradio,gradio_client,examples",
    }
    blocked = subprocess.run(
        [sys.executable, "-c", "import gradio"], env={**os.environ, **front_env}, capture_output=True, text=True
    )
    assert "ImportError: import of gradio is blocked in this process" in blocked.stderr
    stack = LocalStack(
        SPEC, port=free_port(), tuning={"app_declaration_path": str(declaration_in(layer))}, front_env=front_env
    ).start()
    try:
        forwarded = {"x-forwarded-host": "abc.execute-api.us-east-1.amazonaws.com", "x-forwarded-proto": "https"}
        page = httpx.get(f"{stack.url}/", headers=forwarded)
        assert page.status_code == 200
        inline = re.search(r"window\.gradio_config = (\{.*?\});</script>", page.text)
        assert inline, page.text[:500]
        config = json.loads(inline.group(1))
        assert config["title"] == "Sepia on Surge"
        assert config["root"] == "https://abc.execute-api.us-east-1.amazonaws.com"
        assert "crypto.getRandomValues" in page.text  # the session-hash shim
        theme = httpx.get(f"{stack.url}/theme.css")
        assert theme.headers["content-type"].startswith("text/css") and "--" in theme.text
        script = re.search(r'src="\./(assets/index-[\w-]+\.js)"', page.text)
        assert script
        asset = httpx.get(f"{stack.url}/{script.group(1)}")
        assert asset.status_code == 200 and len(asset.content) > 1000
        assert httpx.get(f"{stack.url}/assets/../app.json").status_code == 404
        served = httpx.get(f"{stack.url}/config", headers=forwarded).json()
        assert served["dependencies"][0]["api_name"] == "sepia"
        assert served["root"] == "https://abc.execute-api.us-east-1.amazonaws.com", "from the declaration too"
        assert httpx.get(f"{stack.url}/gradio_api/app_id").json() == {"app_id": config["app_id"]}
        path = tmp_path / "photo.png"
        Image.fromarray(photo(64)).save(path)
        result = Client(stack.url, verbose=False).predict(handle_file(str(path)), 1.0, api_name="/sepia")
        expected = np.clip(photo(64).astype(np.float64) @ SEPIA.T, 0, 255).astype(np.uint8)
        assert np.array_equal(np.asarray(Image.open(result))[..., :3], expected)
    finally:
        stack.stop()
