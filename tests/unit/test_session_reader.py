"""The stream's reader: each event once, in order, despite look-back reads; pending jobs tracked."""

from __future__ import annotations

from surge.models import StoredEvent
from surge.session import SessionReader
from surge.store import event_sort_key


def event(stamp: int, event_id: str, msg: str, **extra: object) -> StoredEvent:
    return StoredEvent(sk=event_sort_key(stamp, event_id), body={"msg": msg, "event_id": event_id}, **extra)  # type: ignore[arg-type]


def test_each_event_is_delivered_once_even_when_reads_overlap() -> None:
    reader = SessionReader("s")
    first = [event(1_000, "a", "estimation", group="g", seq=1, api_name="f"), event(2_000, "a", "process_starts")]
    assert reader.take(first) == first
    late = event(1_500, "b", "estimation", group="g", seq=2, api_name="f")
    assert reader.query_after < first[0].sk, "reads look back behind the newest event"
    assert reader.take([*first, late]) == [late]
    assert reader.pending == {"a", "b"}
    assert set(reader.waiting) == {"b"}


def test_completion_ends_a_pending_job() -> None:
    reader = SessionReader("s")
    reader.take([event(1, "a", "estimation", group="g", seq=1, api_name="f"), event(2, "a", "process_completed")])
    assert reader.pending == set() and reader.waiting == {} and reader.delivered


def test_an_event_landing_behind_the_look_back_is_found_by_a_rescan_and_sent_once() -> None:
    reader = SessionReader("s")
    first = event(1_000, "a", "estimation", group="g", seq=1, api_name="f")
    later = event(9_000_000_000, "b", "estimation", group="g", seq=2, api_name="f")
    reader.take([first, later])
    late = event(2_000, "a", "process_completed")  # stamped early, written late (an SDK retry)
    assert reader.query_after > late.sk, "the fast path no longer sees it"
    assert reader.take([first, late, later]) == [late], "a rescan from the start does"
    assert reader.take([first, late, later]) == []
    assert reader.pending == {"b"}
