"""How often a session stream reads its log: fast while a job runs, a few reads for a long wait."""

from __future__ import annotations

from surge.models import StoredEvent
from surge.session import PollPolicy, SessionReader, Waiting
from surge.store import event_sort_key


def reads_while_waiting(policy: PollPolicy, wait_s: float) -> int:
    """Reads a stream makes while its one job waits `wait_s`, the ETA being right."""
    now, interval, reads = 0.0, policy.min_s, 0
    while now < wait_s:
        reads += 1
        interval = policy.next_s(interval, running=False, eta_left_s=wait_s - now, linger_left_s=None)
        now += interval
    return reads


def test_reads_for_a_long_wait_grow_far_slower_than_the_wait() -> None:
    policy = PollPolicy()
    short, long = reads_while_waiting(policy, 5), reads_while_waiting(policy, 60)
    assert short <= 12, short
    assert long <= 25, long
    assert long < 60 / policy.max_s / 4, "one read per max_s would be 120"


def test_news_of_a_running_job_brings_fast_reads_back() -> None:
    policy = PollPolicy()
    assert policy.next_s(0.5, running=True, eta_left_s=None, linger_left_s=None) == policy.min_s
    assert policy.next_s(policy.min_s, running=False, eta_left_s=None, linger_left_s=None) > policy.min_s


def test_lingering_after_the_last_job_is_one_read_at_its_end() -> None:
    policy = PollPolicy()
    assert policy.next_s(policy.min_s, running=False, eta_left_s=None, linger_left_s=0.3) == 0.3


def test_eta_is_known_only_when_every_pending_job_waits_with_one() -> None:
    reader = SessionReader("s")
    estimation = {"msg": "estimation", "event_id": "a", "rank": 5, "queue_size": 9, "rank_eta": 4.0}
    reader.take([StoredEvent(sk=event_sort_key(1, "a"), body=estimation, group="g", seq=1, api_name="f")])
    left = reader.eta_left_s(0.0)
    assert left is not None and left > 3.0
    reader.take([StoredEvent(sk=event_sort_key(2, "b"), body={"msg": "process_starts", "event_id": "b"})])
    assert reader.eta_left_s(0.0) is None, "a running job of the session needs fast reads"


def test_the_start_is_expected_from_how_fast_the_rank_falls_once_it_has_moved() -> None:
    waiting = Waiting("g", 1, "f", starts_by=0.5)
    waiting.first_rank = waiting.latest_rank = (0.0, 100)
    assert waiting.starts_in_s(0.0) == 0.5, "before the line moves, the server's ETA"
    waiting.latest_rank = (2.0, 80)
    assert waiting.starts_in_s(2.0) == 8.0, "80 places at 10 places a second"
    assert waiting.starts_in_s(5.0) == 5.0
