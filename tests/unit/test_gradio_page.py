"""Gradio's page served without gradio (surge.gradio_page): the root URL each request gets is the one gradio
itself would compute, and it lands in the page safely whatever the headers say."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from gradio import route_utils

from surge.gradio_page import _inline_json, root_url

CASES = [
    ({}, ""),
    ({"x-forwarded-host": "example.com"}, ""),
    ({"x-forwarded-host": "example.com, proxy.internal", "x-forwarded-proto": "https, http"}, ""),
    ({"x-forwarded-host": "abc.execute-api.us-east-1.amazonaws.com", "x-forwarded-proto": "https"}, "/live"),
    ({"x-forwarded-proto": "https"}, "/live"),
    ({"x-gradio-server": "http://10.0.0.1:7860/"}, ""),
    ({}, "https://public.example.com/app/"),
    ({}, "/live"),
]


@pytest.mark.parametrize("route", ["/", "/gradio_api/queue/join"])
@pytest.mark.parametrize(("headers", "root_path"), CASES)
def test_root_url_is_the_one_gradio_computes(headers: dict[str, str], root_path: str, route: str) -> None:
    """For the page (`/`) and for a join, whose root URL starts the URLs of the job's output files."""
    app = FastAPI()

    @app.get(route)
    def both(request: Request) -> list[str]:
        theirs = route_utils.get_root_url(request=request, route_path=route, root_path=request.scope.get("root_path"))
        return [root_url(request, route), theirs]

    mine, theirs = TestClient(app, root_path=root_path).get(f"{route}?x=1", headers=headers).json()
    assert mine == theirs
    assert not mine.endswith("/queue/join")


def test_a_forged_host_cannot_close_the_pages_script() -> None:
    forged = "evil.com</script><script>alert(1)//"
    inline = _inline_json(f"http://{forged}")
    assert "<" not in inline and ">" not in inline and json.loads(inline) == f"http://{forged}"
