"""A Gradio session's kept `gr.State` values in the state table (moto): one item per session, values
written back per state, and a state with a time to live dropped once it lapses, as Gradio drops it."""

from __future__ import annotations

import time

from surge.store.page_state import Kept, PageStateStore
from tests.integration.conftest import settings_for


def test_states_are_kept_per_session_and_one_past_its_time_to_live_is_dropped(aws: None) -> None:
    store = PageStateStore(settings_for("tests.apps.gradio_apps:counter"))
    store.save("one", {3: b"three", 4: b"four"})
    store.save("two", {3: b"other"})
    assert store.load("one").states == {3: b"three", 4: b"four"}
    time.sleep(1.0)
    store.save("one", {4: b"FOUR"})  # written again: its life starts again
    time.sleep(1.0)
    assert store.load("one", {3: 1.5, 4: 1.5}).states == {4: b"FOUR"}, "state 3 was last written 2 s ago"
    assert store.load("one").states == {3: b"three", 4: b"FOUR"}, "a state without a time to live stays"
    assert store.load("two", {3: 1.5}).states == {}, "sessions are apart; each lapses on its own writes"
    assert store.load("three") == Kept()


def test_changed_component_properties_are_kept_beside_the_states_and_dropped_when_back(aws: None) -> None:
    store = PageStateStore(settings_for("tests.apps.gradio_apps:counter"))
    store.save("one", {3: b"three"}, {7: {"choices": b"abc", "maximum": b"10"}})
    store.save("one", {}, {7: {"choices": b"xyz"}, 8: {"type": b"pil"}})  # properties alone: the states stay
    assert store.load("one") == Kept({3: b"three"}, {7: {"choices": b"xyz", "maximum": b"10"}, 8: {"type": b"pil"}})
    store.save("one", {}, {}, {7: ["maximum"], 8: ["type"]})
    assert store.load("one") == Kept({3: b"three"}, {7: {"choices": b"xyz"}})


def test_a_call_writing_hundreds_of_states_and_properties_fits_dynamodbs_expression_limit(aws: None) -> None:
    """DynamoDB refuses an update expression over 4 KB (moto does not): one call writing 300 states and 300
    component properties (a large form reset at once) went in one expression of about 13 kB. It goes in
    several updates of the session's item, each under the limit, and everything is kept."""
    import boto3

    expressions: list[str] = []

    def measure(params: dict[str, object], **_: object) -> None:
        expressions.append(str(params["UpdateExpression"]))

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register(  # type: ignore[union-attr]
        "before-parameter-build.dynamodb.UpdateItem", measure
    )
    store = PageStateStore(settings_for("tests.apps.gradio_apps:counter"))
    states = {block_id: f"s{block_id}".encode() for block_id in range(300)}
    props = {block_id: {"value": f"p{block_id}".encode()} for block_id in range(1000, 1300)}
    store.save("big", states, props)
    assert len(expressions) > 1 and max(len(expression) for expression in expressions) < 4096
    assert store.load("big") == Kept(states, props)
    store.save("big", {}, {}, {block_id: ["value"] for block_id in range(1000, 1300)})
    assert store.load("big") == Kept(states, {})
