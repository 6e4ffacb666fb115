"""The embedding model of `examples.embedding_app` as an unchanged `gr.Interface`: a batched event.

`make run APP=examples.gradio_embedding_app:demo`. The model loads once per worker process, on its first
batch (a Gradio app has no setup hook; the front only imports this module and never loads torch).
"""

from __future__ import annotations

import threading

import gradio as gr

from examples.embedding_app import MAX_BATCH_SIZE, Embedder, load_embedder

_lock = threading.Lock()
_embedder: Embedder | None = None


def _model() -> Embedder:
    global _embedder
    with _lock:
        if _embedder is None:
            _embedder = load_embedder()
        return _embedder


def embed(texts: list[str]) -> tuple[list[list[float]]]:
    """A batch of texts → their 384-dimensional unit-length embeddings, one forward pass per batch."""
    return (_model().encode(texts, "embed"),)


demo = gr.Interface(
    embed,
    gr.Textbox(label="text"),
    gr.JSON(label="embedding"),
    batch=True,
    max_batch_size=MAX_BATCH_SIZE,
    api_name="embed",
    concurrency_limit=1,
    title="Sentence embeddings on Surge (all-MiniLM-L6-v2)",
)
demo.queue(max_size=2000)

if __name__ == "__main__":
    demo.launch()
