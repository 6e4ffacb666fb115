"""The join limiter's client key: API Gateway's own view of the caller, never a header the caller wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from surge.guard import client_address, client_port

EVENTS = Path(__file__).resolve().parents[2] / "events"


def _scope(**extra: Any) -> dict[str, Any]:
    return {"type": "http", "headers": [(b"x-forwarded-for", b"198.51.100.1")], "client": ("10.1.2.3", 5000), **extra}


def test_client_address_is_api_gateways_source_ip_not_the_forwarded_header() -> None:
    event = json.loads((EVENTS / "apigateway/post_join.json").read_text())
    assert event["headers"]["X-Forwarded-For"].startswith("203.0.113.7")
    event["headers"]["X-Forwarded-For"] = "198.51.100.1, 203.0.113.7"
    assert client_address(_scope(**{"aws.event": event})) == "203.0.113.7"


def test_client_address_falls_back_to_the_socket_peer_locally() -> None:
    assert client_address(_scope()) == "10.1.2.3"
    assert client_address(_scope(**{"aws.event": {"requestContext": {}}})) == "10.1.2.3"
    assert client_address({"type": "http", "headers": [], "client": None}) == "?"


def test_client_port_is_the_sockets_locally_and_unknown_behind_api_gateway() -> None:
    """`gr.Request.client.port`: the front's socket peer locally; API Gateway's event names no port."""
    assert client_port(_scope()) == 5000
    event = json.loads((EVENTS / "apigateway/post_join.json").read_text())
    assert client_port(_scope(**{"aws.event": event})) is None
    assert client_port({"type": "http", "headers": [], "client": None}) is None
