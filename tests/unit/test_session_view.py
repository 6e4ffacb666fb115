"""The stream's pure part: each Gradio message of a session's jobs exactly once, in order, and ranks
that come from the shared counters only (no store, no sockets)."""

from __future__ import annotations

from surge import protocol
from surge.models import Counters, Job, JobState, Shard
from surge.session import SessionView, count_behind, rebound


def _job(state: JobState, **fields: object) -> Job:
    values: dict[str, object] = {"job_id": "j1", "session_hash": "s" * 16, "created_at": 1.0, **fields}
    return Job(api_name="echo", group="g", state=state, **values)  # type: ignore[arg-type]


def _no_eta(job: Job, rank: int, busy: bool) -> float | None:
    return None


def test_each_message_is_sent_once_in_gradio_order() -> None:
    view = SessionView("s" * 16)
    assert view.take([_job(JobState.WAITING)], 1.0, lambda _: None) == []
    progress = protocol.progress("j1", 0.5, None, None, None, "steps")
    chunk = protocol.generating("j1", ["a"])
    running = _job(JobState.RUNNING, started_at=2.0, progress=progress, chunks=[chunk])
    assert [m["msg"] for m in view.take([running], 2.0, lambda _: 0.1)] == [
        "estimation",
        "process_starts",
        "progress",
        "process_generating",
    ]
    assert view.take([running], 3.0, lambda _: 0.1) == []
    done = protocol.completed("j1", ["ab"], 0.2, 0.1)
    second = protocol.generating("j1", [[["append", [], "b"]]])
    finished = _job(JobState.COMPLETED, started_at=2.0, chunks=[chunk, second], result=done)
    assert view.take([finished], 4.0, lambda _: 0.1) == [second, done]
    assert view.take([finished], 5.0, lambda _: 0.1) == []
    assert not view.pending and [job.job_id for job in view.delivered] == ["j1"]


def test_progress_comes_after_the_chunks_yielded_before_it_was_reported() -> None:
    """A `progress.tqdm` loop reports step i, then yields chunk i, then reports step i + 1: a read that
    finds chunk 1 and step 1 both new sends chunk 1 first, as Gradio sends them when they happen."""
    view = SessionView("s" * 16)
    step = [protocol.progress("j1", None, i, 3, None, "steps") for i in range(3)]
    chunks = [protocol.generating("j1", [f"c{i}"]) for i in range(3)]

    def running(progress: int, yielded: int, after: int | None) -> Job:
        return _job(
            JobState.RUNNING, started_at=2.0, progress=step[progress], progress_after=after, chunks=chunks[:yielded]
        )

    assert [m["msg"] for m in view.take([running(0, 0, 0)], 2.0, lambda _: 0.1)] == [
        "estimation",
        "process_starts",
        "progress",
    ]
    assert view.take([running(1, 1, 1)], 3.0, lambda _: 0.1) == [chunks[0], step[1]]
    assert view.take([running(2, 3, 2)], 4.0, lambda _: 0.1) == [chunks[1], step[2], chunks[2]]
    # An item written by a worker that does not record the place (None): the progress goes first.
    other = SessionView("s" * 16)
    other.take([running(0, 0, 0)], 2.0, lambda _: 0.1)
    assert other.take([running(1, 1, None)], 3.0, lambda _: 0.1) == [step[1], chunks[0]]


def test_a_job_seen_already_finished_gets_starts_then_its_completion() -> None:
    view = SessionView("s" * 16)
    done = protocol.completed("j1", ["x"], 0.01, None)
    kinds = [m["msg"] for m in view.take([_job(JobState.COMPLETED, result=done)], 1.0, lambda _: None)]
    assert kinds == ["estimation", "process_starts", "process_completed"]


def test_a_cancelled_job_gets_only_its_completion() -> None:
    view = SessionView("s" * 16)
    cancelled = protocol.cancelled("j1")
    assert view.take([_job(JobState.CANCELLED, result=cancelled)], 1.0, lambda _: None) == [cancelled]


def test_rank_waits_for_a_counters_read_that_began_after_the_job_was_seen_and_only_falls() -> None:
    view = SessionView("s" * 16)
    view.take([_job(JobState.WAITING)], 10.0, lambda _: None)
    early = Counters(shards=[Shard(joined=1, tail={"g": 1})])
    assert view.estimations(early, 9.0, _no_eta) == []  # may predate the admission: optimistic
    counters = Counters(shards=[Shard(joined=5, tail={"g": 5}), Shard(joined=3, tail={"g": 3})])
    (first,) = view.estimations(counters, 10.5, _no_eta)
    assert (first["rank"], first["queue_size"]) == (7, 8)
    assert view.estimations(counters, 11.0, _no_eta) == []  # unchanged: nothing sent
    later = Counters(shards=[Shard(joined=12, left=3, tail={"g": 12}, head={"g": 3}), Shard(joined=3, tail={"g": 3})])
    (second,) = view.estimations(later, 12.0, _no_eta)
    assert second["rank"] == 4 and second["queue_size"] == 12


def test_a_first_rank_comes_only_from_a_strongly_consistent_read_and_later_ones_from_any() -> None:
    """An eventually consistent read may not count the job's own admission yet: its tails could rank the
    job ahead of jobs that joined before it. Once the job has its bound, a lagging read of the heads only
    shows the line a tick late (and the shown rank never rises)."""
    view = SessionView("s" * 16)
    view.take([_job(JobState.WAITING)], 10.0, lambda _: None)
    counters = Counters(shards=[Shard(joined=5, tail={"g": 5})])
    assert view.estimations(counters, 10.5, _no_eta, consistent=False) == []
    (first,) = view.estimations(counters, 10.5, _no_eta)
    assert first["rank"] == 4
    moved = Counters(shards=[Shard(joined=5, left=2, tail={"g": 5}, head={"g": 2})])
    (second,) = view.estimations(moved, 11.0, _no_eta, consistent=False)
    assert second["rank"] == 2
    lagging = Counters(shards=[Shard(joined=5, left=1, tail={"g": 5}, head={"g": 1})])
    assert [m["rank"] for m in view.estimations(lagging, 11.5, _no_eta, consistent=False)] in ([], [2])


def test_a_waiting_job_counts_itself_in_the_queue_size_it_is_shown() -> None:
    """A read taken just as a worker claims the job shows an empty line; the client must still see a
    line of one (Gradio's `queue_size` counts the job itself; its page shows `1/0` otherwise)."""
    view = SessionView("s" * 16)
    view.take([_job(JobState.WAITING)], 1.0, lambda _: None)
    claimed = Counters(shards=[Shard(joined=1, left=1, tail={"g": 1}, head={"g": 1})])
    (shown,) = view.estimations(claimed, 2.0, _no_eta)
    assert (shown["rank"], shown["queue_size"]) == (0, 1)


def test_only_a_job_at_the_front_is_read_for() -> None:
    view = SessionView("s" * 16)
    view.take([_job(JobState.WAITING)], 1.0, lambda _: None)
    deep = Counters(shards=[Shard(joined=40, tail={"g": 40})])
    assert not view.at_front(deep, lambda job: 16)  # rank unknown and the line is long: no read
    assert view.at_front(Counters(shards=[Shard(joined=3, tail={"g": 3})]), lambda job: 16)
    view.estimations(deep, 2.0, _no_eta)
    assert not view.at_front(deep, lambda job: 16)
    front = Counters(shards=[Shard(joined=40, left=39, tail={"g": 40}, head={"g": 39})])
    view.estimations(front, 3.0, _no_eta)
    assert view.at_front(front, lambda job: 16)


def test_a_job_whose_earlier_jobs_have_all_started_is_read_for_though_its_rank_bound_is_not_zero() -> None:
    """SQS keeps no order: once every job that joined before this one has left the line, it may be
    running, whatever its (pessimistic, shown) rank says."""
    view = SessionView("s" * 16)
    view.take([_job(JobState.WAITING, created_at=5.0)], 6.0, lambda _: None)
    before = Counters(shards=[Shard(joined=10, tail={"g": 10})])  # read before the job was created
    crowd = Counters(shards=[Shard(joined=40, tail={"g": 40})])  # read after: 29 more joined meanwhile

    def earlier(created_at: float) -> Counters | None:
        return before if created_at > 4.0 else None

    (shown,) = view.estimations(crowd, 7.0, _no_eta, earlier)
    assert shown["rank"] == 39 and not view.at_front(crowd, lambda job: 16)
    moved = Counters(shards=[Shard(joined=40, left=10, tail={"g": 40}, head={"g": 10})])  # the 10 earlier ones left
    (shown,) = view.estimations(moved, 8.0, _no_eta, earlier)
    assert shown["rank"] == 29 and view.at_front(moved, lambda job: 16)


def test_the_shared_counters_are_wanted_for_a_first_rank_and_then_only_while_a_rank_can_change() -> None:
    """A job seen waiting at the front needs one counters read, for the place Gradio shows every waiting
    visitor ("1/1"); after that its log is read directly, and a process whose sessions all stand at the
    front with their ranks shown reads none. A job further back, or a line not read recently (`None`), does."""
    view = SessionView("s" * 16)
    view.take([_job(JobState.WAITING)], 1.0, lambda _: None)
    short = Counters(shards=[Shard(joined=1, tail={"g": 1})])
    deep = Counters(shards=[Shard(joined=40, tail={"g": 40})])
    assert view.ranked(short, lambda job: 16), "no rank shown yet"
    (shown,) = view.estimations(short, 2.0, _no_eta)
    assert (shown["rank"], shown["queue_size"]) == (0, 1)
    assert not view.ranked(short, lambda job: 16)
    far = SessionView("f" * 16)
    far.take([_job(JobState.WAITING)], 1.0, lambda _: None)
    far.estimations(deep, 2.0, _no_eta)
    assert far.ranked(deep, lambda job: 16)
    assert view.ranked(None, lambda job: 16)
    view.take([_job(JobState.RUNNING, started_at=2.0)], 2.0, lambda _: None)
    assert not view.ranked(None, lambda job: 16)  # nothing waits any more


def test_a_process_with_no_reads_from_before_the_join_bounds_the_job_by_the_tails_its_join_was_admitted_by() -> None:
    """A fresh stream process (a new Lambda environment) has no counters read from before the job joined;
    the job item carries the tails of the admission read (`ahead`): once those jobs have all left, the job
    is near the front and its log is worth reading, though its shown rank (an upper bound) is 14."""
    counters = Counters(shards=[Shard(joined=20, left=5, tail={"g": 20}, head={"g": 5})])
    with_ahead, without = SessionView("s" * 16), SessionView("s" * 16)
    with_ahead.take([_job(JobState.WAITING, ahead=[5])], 1.0, lambda _: None)
    without.take([_job(JobState.WAITING)], 1.0, lambda _: None)
    for view in (with_ahead, without):
        (shown,) = view.estimations(counters, 2.0, _no_eta)
        assert shown["rank"] == 14
    assert with_ahead.at_front(counters, lambda job: 16)
    assert not without.at_front(counters, lambda job: 16)


def test_visitors_who_joined_together_are_ranked_in_the_order_they_joined_not_all_at_the_bound() -> None:
    """Four sessions join within one tick: one counters read bounds each of them by all four. The stream
    process knows the three others and which joined later, so each is shown its own place, as Gradio
    shows them (0, 1, 2, 3), where the bound alone showed 3 to everyone."""
    views = [SessionView(f"{i}" * 16) for i in range(4)]
    for i, view in enumerate(views):
        view.take([_job(JobState.WAITING, job_id=f"j{i}", session_hash=f"{i}" * 16, created_at=1.0 + i)], 10.0, _none)
    counters = Counters(shards=[Shard(joined=4, tail={"g": 4})])
    waiting = [tracked for view in views for tracked in view.waiting()]
    behind = count_behind(waiting, 10.5)
    assert behind == {"j0": 3, "j1": 2, "j2": 1, "j3": 0}
    ranks = [view.estimations(counters, 10.5, _no_eta, behind=behind)[0]["rank"] for view in views]
    assert ranks == [0, 1, 2, 3]
    alone = SessionView("9" * 16)
    alone.take([_job(JobState.WAITING, session_hash="9" * 16, created_at=1.0)], 10.0, _none)
    assert alone.estimations(counters, 10.5, _no_eta)[0]["rank"] == 3, "without the others known: the bound"


def test_a_later_job_seen_after_the_bound_was_read_is_not_taken_off_it() -> None:
    """The bound counts only jobs committed before its read began: one seen later is not in it, so
    taking it off would show a place better than the truth. And a job is never shown ahead of the jobs
    surely ahead of it (read before it joined)."""
    first, late = SessionView("a" * 16), SessionView("b" * 16)
    first.take([_job(JobState.WAITING, job_id="a", session_hash="a" * 16, created_at=1.0)], 10.0, _none)
    counters = Counters(shards=[Shard(joined=3, tail={"g": 3})])
    assert first.estimations(counters, 10.5, _no_eta)[0]["rank"] == 2
    late.take([_job(JobState.WAITING, job_id="b", session_hash="b" * 16, created_at=2.0)], 11.0, _none)
    waiting = [*first.waiting(), *late.waiting()]
    assert count_behind(waiting, 11.5)["a"] == 0
    assert first.estimations(counters, 11.5, _no_eta, behind=count_behind(waiting, 11.5)) == []  # still 2

    ahead = SessionView("c" * 16)
    ahead.take([_job(JobState.WAITING, job_id="c", session_hash="c" * 16, created_at=5.0)], 10.0, _none)
    earlier = Counters(shards=[Shard(joined=2, tail={"g": 2})])  # read before c joined: two surely ahead
    (shown,) = ahead.estimations(counters, 10.5, _no_eta, before=lambda created_at: earlier, behind={"c": 2})
    assert shown["rank"] == 2, "two jobs surely ahead still wait: not shown at the front"


def test_visitors_who_open_their_streams_one_after_another_are_ranked_in_the_order_they_joined() -> None:
    """Four sessions join one after another, then open their streams one after another (a tick apart):
    each one's first bound counts all four, and the jobs behind it were seen only after that bound was
    read. The next strongly consistent read counts every job seen before it, so each is shown its own
    place (Gradio's 0, 1, 2, 3), where the first bounds alone showed 3 to each and never came down."""
    views = [SessionView(f"{i}" * 16) for i in range(4)]
    counters = Counters(shards=[Shard(joined=4, tail={"g": 4})])
    shown: dict[str, int] = {}

    def tick(read_started: float, consistent: bool = True) -> None:
        # As the stream process's reader does after each read (`SessionHub._read_counters`).
        waiting = [tracked for view in views for tracked in view.waiting()]
        behind = rebound(waiting, counters, read_started) if consistent else count_behind(waiting, read_started)
        for view in views:
            found = view.estimations(counters, read_started, _no_eta, consistent=consistent, behind=behind)
            for message in found:
                shown[message["event_id"]] = message["rank"]

    for i, view in enumerate(views):
        job = _job(JobState.WAITING, job_id=f"j{i}", session_hash=f"{i}" * 16, created_at=1.0 + i)
        view.take([job], 10.0 + i, _none)
        tick(10.5 + i, consistent=i < 3)  # the last stream's read is eventually consistent: no first rank
    assert shown == {"j0": 1, "j1": 2, "j2": 3}, "each first bound counts the jobs opened after it"
    tick(14.5)
    assert shown == {"j0": 0, "j1": 1, "j2": 2, "j3": 3}
    before = dict(shown)
    tick(15.0, consistent=False)
    assert shown == before, "an eventually consistent read takes nothing more off (it may lag the joins)"


def test_a_job_whose_join_this_process_answered_before_the_bound_was_read_is_taken_off_it() -> None:
    """Visitors joining 0.1 s apart: a's bound is read just after b's join was answered here, before b's
    stream opened. The process that served b's join knows b was committed by its answer, so b counts as
    seen then: behind a and in a's bound. Without that, a was shown one place too far back until the
    line moved (and, with a new joiner before every read, never its own place)."""
    first, late = SessionView("a" * 16), SessionView("b" * 16)
    first.take([_job(JobState.WAITING, job_id="a", session_hash="a" * 16, created_at=1.0)], 10.0, _none)
    counters = Counters(shards=[Shard(joined=3, tail={"g": 3})])  # one running ahead's place: a, b waiting
    b = _job(JobState.WAITING, job_id="b", session_hash="b" * 16, created_at=2.0)
    late.take([b], 11.0, _none, committed={"b": 10.4}.get)
    assert late.waiting()[0].seen_at == 10.4
    waiting = [*first.waiting(), *late.waiting()]
    behind = count_behind(waiting, 10.5, every_at_read=True)
    assert behind["a"] == 1
    assert first.estimations(counters, 10.5, _no_eta, behind=behind)[0]["rank"] == 1

    unanswered = SessionView("c" * 16)  # a join not served here: seen at its first read, as before
    unanswered.take([_job(JobState.WAITING, job_id="c", session_hash="c" * 16)], 11.0, _none, committed={}.get)
    assert unanswered.waiting()[0].seen_at == 11.0
    answered_later = SessionView("d" * 16)  # a read ending before the answer: seen at the read
    answered_later.take([_job(JobState.WAITING, job_id="d", session_hash="d" * 16)], 11.0, _none, {"d": 12.0}.get)
    assert answered_later.waiting()[0].seen_at == 11.0


def test_a_place_already_shown_is_told_again_with_its_first_eta() -> None:
    """Before a function's first run there is no ETA (as in Gradio). Once one is known, a visitor whose
    place has not changed is told it at the next tick, not only when the line next moves."""
    view = SessionView("a" * 16)
    view.take([_job(JobState.WAITING)], 10.0, _none)
    counters = Counters(shards=[Shard(joined=3, tail={"g": 3})])
    assert [m["rank_eta"] for m in view.estimations(counters, 10.5, _no_eta)] == [None]
    assert view.estimations(counters, 11.0, _no_eta) == [], "nothing new: nothing sent"
    (told,) = view.estimations(counters, 11.5, lambda job, rank, busy: 2.5)
    assert (told["rank"], told["rank_eta"]) == (2, 2.5)
    assert view.estimations(counters, 12.0, lambda job, rank, busy: 2.5) == [], "once"


def test_a_job_two_streams_of_its_session_follow_is_counted_by_the_earlier_bound() -> None:
    """Each stream has its own bound for the job. A later job seen between the two bounds is in the later
    one only: taking it off the earlier one's rank would show a place better than the truth."""
    first, second, other = SessionView("a" * 16), SessionView("a" * 16), SessionView("b" * 16)
    first.take([_job(JobState.WAITING, job_id="x", session_hash="a" * 16, created_at=1.0)], 9.0, _none)
    other.take([_job(JobState.WAITING, job_id="y", session_hash="b" * 16, created_at=2.0)], 11.0, _none)
    second.take([_job(JobState.WAITING, job_id="x", session_hash="a" * 16, created_at=1.0)], 11.5, _none)
    (x1,), (y,), (x2,) = first.waiting(), other.waiting(), second.waiting()
    x1.tails, x1.tails_at = [6], 10.0
    x2.tails, x2.tails_at = [7], 12.0
    for order in ([x1, y, x2], [x2, y, x1]):
        assert count_behind(order, 12.5)["x"] == 0, "y was seen after the first stream's bound was read"


def _none(api_name: str) -> float | None:
    return None


def test_a_job_waiting_at_the_front_is_told_it_waits_for_a_busy_slot() -> None:
    """Gradio's page shows the ETA as a total (elapsed + the latest estimate): a job that reaches rank 0
    after waiting still waits for the running one, so its estimate keeps that wait, and the total holds.
    One that joined at the front and still waits when its rank is read waits for a busy slot too (a
    free one would have taken it): it was told its own run alone (6 s behind a 6 s run, done at 11 s)."""
    asked: list[tuple[int, bool]] = []

    def eta(job: Job, rank: int, busy: bool) -> float | None:
        asked.append((rank, busy))
        return None

    behind, fresh = SessionView("s" * 16), SessionView("t" * 16)
    behind.take([_job(JobState.WAITING)], 1.0, lambda _: None)
    fresh.take([_job(JobState.WAITING, job_id="j2")], 1.0, lambda _: None)
    two_ahead = Counters(shards=[Shard(joined=3, tail={"g": 3})])
    behind.estimations(two_ahead, 2.0, eta)
    at_front = Counters(shards=[Shard(joined=3, left=2, tail={"g": 3}, head={"g": 2})])
    behind.estimations(at_front, 3.0, eta)
    assert asked == [(2, True), (0, True)]
    asked.clear()
    fresh.estimations(Counters(shards=[Shard(joined=1, tail={"g": 1})]), 2.0, eta)
    assert asked == [(0, True)]


def test_a_curl_call_stream_sends_every_step_again_where_a_page_stream_resumes() -> None:
    """A session stream the client dropped had sent two steps, which the client applied: the next stream of
    the session sends only the third. A stream of Gradio's curl API rebuilds each step whole from the diffs
    before it (`sse.simple_stream`), so it sends them all, from the first."""
    first = protocol.generating("j1", ["a"])
    steps = [
        first,
        protocol.generating("j1", [[["append", [], "b"]]]),
        protocol.generating("j1", [[["append", [], "c"]]]),
    ]
    job = _job(JobState.RUNNING, started_at=2.0, chunks=steps, chunks_sent=2)
    resumed = SessionView("s" * 16).take([job], 3.0, lambda _: 0.1)
    assert [m for m in resumed if m["msg"] == "process_generating"] == steps[2:]
    again = SessionView("s" * 16, resumes=False).take([job], 3.0, lambda _: 0.1)
    assert [m for m in again if m["msg"] == "process_generating"] == steps
