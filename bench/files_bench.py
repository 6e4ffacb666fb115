"""Files through the local stack: upload, download and a whole gradio_client round trip of a photo of
about 3 MB (a PNG of noise does not compress), and the API handler's import time with and without gradio.

`python -m bench.files_bench` prints the figures (medians of `--runs`); nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from gradio_client import Client, handle_file
from PIL import Image

from surge.declared import main as write_declaration
from surge_local.launcher import LocalStack, free_port
from tests.apps.gradio_apps import photo

IMPORT_PROBE = """
import os, sys, time
started = time.perf_counter()
import api_handler
print(time.perf_counter() - started, "gradio" in sys.modules)
"""


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.0f} ms (min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f})"


def transfers(runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo.png"
        Image.fromarray(photo()).save(path)
        size_mb = path.stat().st_size / 1e6
        stack = LocalStack("tests.apps.gradio_apps:image", port=free_port(), workers=2).start()
        try:
            uploads, downloads, trips = [], [], []
            for _ in range(runs):
                started = time.perf_counter()
                with path.open("rb") as body:
                    name = httpx.post(f"{stack.url}/gradio_api/upload", files=[("files", ("photo.png", body))]).json()[
                        0
                    ]
                uploads.append(time.perf_counter() - started)
                started = time.perf_counter()
                got = httpx.get(f"{stack.url}/gradio_api/file={name}", follow_redirects=True)
                downloads.append(time.perf_counter() - started)
                assert len(got.content) == path.stat().st_size
            client = Client(stack.url, verbose=False)
            client.predict(handle_file(str(path)), api_name="/echo_image")  # warm: first call loads numpy/PIL paths
            for _ in range(runs):
                started = time.perf_counter()
                client.predict(handle_file(str(path)), api_name="/echo_image")
                trips.append(time.perf_counter() - started)
        finally:
            stack.stop()
    print(f"photo: {size_mb:.2f} MB PNG, local stack (moto S3), {runs} runs each")
    print(f"  upload   POST /gradio_api/upload        {_median_ms(uploads)}")
    print(f"  download GET /gradio_api/file= (302+S3)  {_median_ms(downloads)}")
    print(f"  gradio_client predict, image both ways   {_median_ms(trips)}")


def import_times(runs: int) -> None:
    root = Path(__file__).resolve().parent.parent
    base = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"}
    env = {
        **base,
        "PYTHONPATH": os.pathsep.join(str(root / p) for p in ("layers/surge", "functions/api", ".")),
        "EVENTS_TABLE_NAME": "e",
        "STATE_TABLE_NAME": "s",
        "QUEUE_URL_PREFIX": "https://sqs.us-east-1.amazonaws.com/1/x-",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    declared = Path(tempfile.mkdtemp()) / "app.json"
    write_declaration(["examples.gradio_image_app:demo", str(declared), "--page", str(declared.parent / "page")])
    cases: tuple[tuple[str, str, dict[str, str]], ...] = (
        ("surge.App", "examples.demo_app:app", {}),
        ("gr.Interface", "examples.gradio_image_app:demo", {}),
        (
            "gr.Interface, from its declaration",
            "examples.gradio_image_app:demo",
            {"APP_DECLARATION_PATH": str(declared)},
        ),
    )
    for label, spec, extra in cases:
        samples = []
        for _ in range(runs):
            child_env = {**env, "APP_MODULE": spec, **extra}
            out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], env=child_env, capture_output=True, text=True)
            seconds, gradio = out.stdout.split()
            samples.append(float(seconds))
        print(f"  import api_handler, {spec} ({label}; gradio imported: {gradio}): {_median_ms(samples)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--imports-only", action="store_true")
    args = parser.parse_args()
    if not args.imports_only:
        transfers(args.runs)
    print("API Lambda handler import (a cold start's import phase, warm file cache):")
    import_times(args.runs)


if __name__ == "__main__":
    main()
