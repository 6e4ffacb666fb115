"""The worker image, checked without Docker: what gpu_worker/Dockerfile copies exists in the repository
and in the build context that `sam build` bundles for CodeBuild, and it starts the local worker's entry."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.template.stack import ROOT, TEMPLATE, load

DOCKERFILE = ROOT / "gpu_worker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def build_args() -> dict[str, str]:
    return dict(arg.split("=", 1) for kind, arg in instructions() if kind == "ARG" and "=" in arg)


def copy_sources() -> list[str]:
    """Every source path of a COPY, with the ARG defaults substituted."""
    args = build_args()
    sources = []
    for kind, arguments in instructions():
        if kind == "COPY":
            *paths, _destination = shlex.split(arguments)
            sources.extend(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], path) for path in paths)
    return sources


def test_every_copied_path_exists_in_the_repository() -> None:
    sources = copy_sources()
    assert {"layers/surge/surge", "gpu_worker/worker_main.py", "layers/surge/requirements.txt"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source


def test_image_starts_the_same_entry_point_as_the_local_workers() -> None:
    entrypoints = [arguments for kind, arguments in instructions() if kind == "ENTRYPOINT"]
    assert entrypoints == ['["python", "-m", "worker_main"]']
    launcher = (ROOT / "local/surge_local/launcher.py").read_text()
    assert '[sys.executable, "-m", "surge_local.child"]' in launcher
    child = (ROOT / "local/surge_local/child.py").read_text()
    assert 'runpy.run_module("worker_main", run_name="__main__"' in child
    worker_main = (ROOT / "gpu_worker/worker_main.py").read_text()
    assert "signal.signal(signal.SIGTERM" in worker_main
    env = " ".join(arguments for kind, arguments in instructions() if kind == "ENV")
    assert "PYTHONPATH=/srv/surge" in env
    workdirs = [arguments for kind, arguments in instructions() if kind == "WORKDIR"]
    assert workdirs == ["/srv/surge"]


def test_base_images_are_the_ones_the_template_chooses_from() -> None:
    template = load(TEMPLATE)
    _, gpu, cpu = template["Resources"]["WorkerImage"]["Properties"]["BaseImage"]["Fn::If"]
    assert build_args()["BASE_IMAGE"] == gpu
    assert re.search(r"-gpu-py312-cu\d+-", gpu)
    assert cpu == "public.ecr.aws/docker/library/python:3.12-slim"
    assert f"BASE_IMAGE={cpu}" in DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `sam build` puts in ImageBuildFunction: the handler and the Docker build context."""
    artifacts = tmp_path_factory.mktemp("ImageBuildFunction")
    subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "functions/imagebuild/Makefile"), "build-ImageBuildFunction"],
        cwd=artifacts,
        env={**os.environ, "ARTIFACTS_DIR": str(artifacts)},
        check=True,
        capture_output=True,
    )
    return artifacts


def test_build_context_bundle_holds_everything_the_dockerfile_copies(bundle: Path) -> None:
    context = bundle / "context"
    assert (bundle / "imagebuild_handler.py").is_file()
    template = load(TEMPLATE)
    assert (context / template["Resources"]["WorkerImage"]["Properties"]["Dockerfile"]).is_file()
    for source in copy_sources():
        assert (context / source).exists(), source
    buildspec = template["Resources"]["ImageBuildProject"]["Properties"]["Source"]["BuildSpec"]
    assert 'docker build -f "src/context/$DOCKERFILE"' in buildspec
    assert "src/context\n" in buildspec


LOCAL_ONLY = {"launcher.py", "emulator.py", "provision.py", "supervision.py", "child.py"}


def test_local_only_modules_ship_in_neither_the_layer_nor_the_image(bundle: Path) -> None:
    """The core layer copies `layers/surge/surge` (layers/surge/Makefile) and the image copies the build
    context: neither holds `surge_local`, and nothing shipped imports it."""
    layer_makefile = (ROOT / "layers/surge/Makefile").read_text()
    assert 'cp -R "$(HERE)/surge" "$(ARTIFACTS_DIR)/python/surge"' in layer_makefile
    for shipped in (ROOT / "layers/surge/surge", bundle / "context"):
        sources = list(shipped.rglob("*.py"))
        assert sources
        assert {path.name for path in sources} & LOCAL_ONLY == set(), shipped
        assert [path for path in sources if "surge_local" in path.read_text()] == [], shipped


def _pins(path: Path) -> dict[str, str]:
    """name -> `==` version of a requirements file (comments and `-r` lines left out)."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==", 1) for line in lines if "==" in line)


def test_the_image_installs_the_examples_requirements_gradio_included_and_keeps_the_bases_torch(bundle: Path) -> None:
    """A Gradio app's workers import gradio: the image installs `<package>/requirements.txt`, which the
    bundle carries; gradio at the pin the tests run; no torch, so the GPU base's CUDA build stays."""
    assert 'python -m pip install -r "${APP_PACKAGE}/requirements.txt"' in DOCKERFILE.read_text()
    package = build_args()["APP_PACKAGE"]
    requirements = ROOT / package / "requirements.txt"
    assert (bundle / "context" / package / "requirements.txt").read_text() == requirements.read_text()
    pins = _pins(requirements)
    assert pins["gradio"] == _pins(ROOT / "requirements-dev.txt")["gradio"]
    assert "torch" not in pins and pins["sentence-transformers"]
    model = (ROOT / "requirements-model.txt").read_text()
    assert f"-r {package}/requirements.txt" in model and "torch==" in model
    assert not (set(_pins(ROOT / "gpu_worker/requirements.txt")) & set(pins))
