"""The join-flood target: one quick batched function, no queue limit (DynamoDB's limits are what push back)."""

from __future__ import annotations

import surge

app = surge.App(title="flood", max_size=None, default_concurrency_limit=None)


@app.function(inputs=["textbox"], outputs=["textbox"], batch=True, max_batch_size=32, concurrency_limit=None)
def quick(texts: list[str]) -> list[list[str]]:
    return [[f"ok:{t}" for t in texts]]
