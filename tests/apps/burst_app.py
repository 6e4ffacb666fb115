"""The burst target: `max_size=50` in front of a quick function."""

from __future__ import annotations

import surge

app = surge.App(title="burst", max_size=50)


@app.function(inputs=["textbox"], outputs=["textbox"], batch=True, max_batch_size=16, concurrency_limit=None)
def quick(texts: list[str]) -> list[list[str]]:
    return [[f"ok:{t}" for t in texts]]
