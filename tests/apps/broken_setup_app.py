"""A test app whose workers cannot start while `BROKEN_SETUP` names a file that exists (its setup raises,
as a model whose weights are missing would), and start once it is gone."""

from __future__ import annotations

import os
from pathlib import Path

import surge

app = surge.App(title="broken setup")


@app.setup
def load() -> None:
    flag = os.environ.get("BROKEN_SETUP")
    if flag and Path(flag).exists():
        raise RuntimeError("the weights at /models/x.bin are missing")


@app.function(inputs=["textbox"], outputs=["textbox"], eta_hint_s=0.1)
def predict(text: str) -> str:
    return text[::-1]
