"""The body limit with bodies that carry no length (chunked), where it trips while the app reads."""

from __future__ import annotations

from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from surge.guard import BodyLimit


async def _streams_while_reading(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that begins its answer, then reads the body (as a streamed response that watches the request)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.body", "body": b"read it all"})


def test_a_chunked_body_over_the_limit_ends_an_answer_already_begun_where_it_is() -> None:
    """It sent a second response start (a 413) after the app's: an ASGI error and a broken response."""
    client = TestClient(BodyLimit(_streams_while_reading, max_bytes=10))
    response = client.post("/", content=iter([b"x" * 8, b"x" * 8, b"x" * 8]))
    assert (response.status_code, response.content) == (200, b"")
    within = client.post("/", content=iter([b"x" * 5, b"x" * 5]))
    assert (within.status_code, within.content) == (200, b"read it all")
