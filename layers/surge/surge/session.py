"""Session streams: one hub per stream process reads the counters once per tick for every session it
holds; each session's log is read only when something can have happened to it.

A session's log is read when its stream opens, while one of its jobs runs or stands at the front of its
line, when a worker's finish notice names one of its jobs (SQS keeps no order: a job far back may be
taken early; the hub reads each function's notices once per tick for all its sessions), when this
process admitted a job for it (`SessionHub.poke`), and otherwise only every `rescan_s` (a safety net). A
session whose jobs all wait behind others costs no reads: its rank and ETA come from the shared
counters. `close_stream` follows the last pending completion at once, as Gradio sends it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from surge import protocol
from surge.application import App
from surge.errors import Unavailable, start_failure_message
from surge.eta import Estimator
from surge.models import TERMINAL_STATES, Counters, Job, JobState
from surge.ports import StreamStore
from surge.settings import Settings

logger = logging.getLogger("surge.session")

HISTORY = 64
"""Counters reads a hub remembers (at one per tick, half a minute), to bound each new job's place from below."""

LATE_POLL_MAX_S = 0.1
"""The longest gap between two reads of a session whose batch runs past its expected end."""

NOTICE_MARGIN_S = 2.0
"""Finish notices are read from this far before the newest seen (workers' clocks differ, and a notice
can land after a newer one)."""

FORGET_GATHER_S = 0.02
"""While other streams are open in the process, how long a closing stream's delete of its delivered jobs
waits for theirs, so that streams closing together (a batch's sessions) share one batch write. The
client does not wait for it: `close_stream` has gone. A stream alone in its process (a Lambda
environment on demand) does not wait."""

SENT_KEPT_S = 60.0
"""How long a stream process remembers what its dropped streams sent, beside the marker it writes: a
session's read that ran while the marker was written sees it from memory."""

COMMITTED_KEPT_S = 30.0
"""How long a stream process remembers when the joins it served were answered (`SessionHub.committed_at`):
a client opens its stream within moments of the answer."""

FORGOTTEN_KEPT_S = 60.0
"""How long a stream process remembers the jobs its streams deleted: a read of the session that began before
a delete landed still returns the job, and a stream of the session here would deliver it again."""

UNDELETED_MAX = 1000
"""At most this many delivered jobs whose delete failed are kept to delete with the next (older ones are
left to expire by TTL)."""

STREAMED = frozenset({"process_generating", "log"})
"""The messages a job's `chunks` hold (generator steps, notices): a dropped stream's count of those it sent
is the place in `chunks` the session's next stream starts from."""

FIRST_READ_MAX_S = 0.1
"""The longest a stream that has just opened waits before its first read of its session's log
(`SessionHub.first_read_s`)."""

FINISH_SAMPLES = 32
"""How many recent jobs' first moments with something to show (first live output, else end), counted from
their stream's opening, time a new stream's first read."""

FINISH_SAMPLE_KEPT_S = 30.0
"""How long such a sample counts: the first read follows the load of the last half minute."""

FINISH_MARGIN_S = 0.005
"""Past those moments a new stream's first read aims: their write lands a few ms after its time."""

FRESH_GAP_S = 0.2
"""The least time between two counters reads of a process, however many streams ask for a fresh one."""

SLOW_TICK_S = 2.0
"""The longest gap between two counters reads while every visitor here is far from the front."""

HANG_UP_WAIT_S = 1.0
"""In a process that serves joins as well as streams (the local front): the longest a stream that sent
`close_stream` stays open for its client to hang up, and so the longest a join of its session waits
before answering. gradio_client tags a new job with the reader open when its join returns, and a reader
that was sent `close_stream` but has not parsed it yet cancels that job; the client hangs up as soon as
it has parsed the frame, so a join that comes after that waits for nothing. A quarter of a second was too
short for 64 threads over 4 clients on a busy 2-core machine: a client parsed the frame later, and a join
answered meanwhile was cancelled (CI, once in many runs). On AWS joins and streams are served by different
functions (that window is documented in the README) and a stream does not wait."""

TICKS_PER_ETA = 4
"""While every visitor here waits far back, the hub reads the counters about this many times over the
shortest expected wait among them (at least every `counters_tick_s`, at most every `SLOW_TICK_S`)."""


@dataclass(frozen=True)
class PollPolicy:
    """How often a stream reads its session's log while something can happen there."""

    min_s: float = 0.02
    max_s: float = 0.5
    streaming_max_s: float = 0.1
    """While a generator or a progress-reporting function runs: its output is shown as it comes."""
    backoff: float = 1.5
    due_min_s: float = 0.005
    """After a read that saw a job run (or change), the least gap before the read at its expected end:
    a quick job's result is read when it is due, not a whole `min_s` later."""
    empty_session_s: float = 10.0
    """How long a stream with no job of its session stays open, reading, before it closes."""
    outage_retry_s: float = 1.0

    def next_s(self, interval: float, ceiling: float) -> float:
        return min(max(self.min_s, interval * self.backoff), ceiling)


@dataclass
class Tracked:
    """What the stream has told the client of one job."""

    job: Job
    tails: list[int] | None = None
    """The shards' tails read after the job was seen waiting: the bound of its rank."""
    tails_at: float | None = None
    """When (monotonic) the read that gave `tails` began: the jobs seen before it are counted in them."""
    earlier: list[int] | None = None
    """The shards' tails of a read that ended before the job was created: jobs surely ahead of it."""
    ahead_min: int | None = None
    """Of those, how many still wait: 0 means every earlier job has started, so this one may have."""
    seen_at: float = 0.0
    started: bool = False
    progress: dict[str, Any] | None = None
    chunks: int = 0
    resumed_at: int = 0
    """How many of the job's generator messages a stream the client dropped had sent (`Job.chunks_sent`)."""
    completed: bool = False
    last_estimation: tuple[int, int] | None = None
    eta: tuple[float, float] | None = None
    """(the expected wait last shown, monotonic time it was shown), when one was known."""


@dataclass
class SessionView:
    """Pure: turns successive reads of a session's log into each Gradio message exactly once."""

    session_hash: str
    jobs: dict[str, Tracked] = field(default_factory=dict)
    told_elsewhere: dict[str, Job] = field(default_factory=dict)
    """Jobs another stream told the visitor were cancelled, which have ended since: this one deletes them."""
    ended_elsewhere: set[str] = field(default_factory=set)
    """Jobs this stream awaited that another stream delivered and deleted (`vanished`)."""
    resumes: bool = True
    """Whether a job's generator messages a dropped stream sent are skipped (its client applied them); a
    stream to Gradio's curl API sends them all again, whole (`sse.simple_stream` rebuilds each step)."""

    def take(
        self,
        jobs: list[Job],
        read_at: float,
        batch_s: Callable[[str], float | None],
        committed: Callable[[str], float | None] = lambda job_id: None,
    ) -> list[dict[str, Any]]:
        """Messages for what changed since the last read; `read_at`: when this read ended (monotonic).
        `committed(job_id)`: when (monotonic) this process got the answer of the job's join, if it served
        it: the job was committed by then, so it was seen then (`Tracked.seen_at`)."""
        messages: list[dict[str, Any]] = []
        for job in jobs:
            tracked = self.jobs.get(job.job_id)
            if tracked is None and job.cancel_delivered:
                # Its visitor was told it was cancelled: nothing more of it is delivered, by any stream.
                if job.state in TERMINAL_STATES:
                    self.told_elsewhere[job.job_id] = job
                continue
            if tracked is None:
                answered = committed(job.job_id)
                seen_at = read_at if answered is None else min(read_at, answered)
                tracked = self.jobs[job.job_id] = Tracked(job, seen_at=seen_at)
                if job.chunks_sent and self.resumes:
                    # A stream the client dropped sent these: the client built its outputs from them, and
                    # the diffs that follow apply to those (sent again, they would be applied twice).
                    tracked.started, tracked.last_estimation = True, (0, 1)
                    tracked.chunks = tracked.resumed_at = min(job.chunks_sent, len(job.chunks))
            elif tracked.completed:
                continue
            tracked.job = job
            messages.extend(_news(tracked, batch_s(job.api_name)))
        return messages

    def vanished(self, present: set[str]) -> list[dict[str, Any]]:
        """An error completion for each job still awaited here that a read of the whole session no longer
        holds (`present`: its job ids): another stream of the session, in another process, delivered it and
        deleted it (a client that opened a stream again while the first still ran: on Lambda a stream whose
        client left runs on). Awaited on, it would be told it was still running at `STREAM_MAX_S`."""
        gone = [t for t in self.pending if t.job.job_id not in present]
        for tracked in gone:
            del self.jobs[tracked.job.job_id]
            self.ended_elsewhere.add(tracked.job.job_id)
        return [
            protocol.failed(
                t.job.job_id,
                "This job's result went to another connection of this session (a stream opened again while "
                "the first was still open); please run it again.",
            )
            for t in gone
        ]

    @property
    def pending(self) -> list[Tracked]:
        return [t for t in self.jobs.values() if not t.completed]

    @property
    def delivered(self) -> list[Job]:
        """The completed jobs, as the last read gave them (a result kept in parts says how many)."""
        return [t.job for t in self.jobs.values() if t.completed]

    @property
    def to_forget(self) -> list[Job]:
        """What the stream deletes as it closes: the jobs it delivered, and those told elsewhere that ended."""
        return [*self.delivered, *self.told_elsewhere.values()]

    def partly_sent(self, streamed: dict[str, int], completions: set[str]) -> list[Job]:
        """The jobs whose streamed messages (generator steps and notices: `chunks`) this stream sent some
        of (`streamed`: how many, per job id) and whose completion it did not send, each with the number a
        next stream starts from."""
        return [
            t.job.model_copy(update={"chunks_sent": t.resumed_at + streamed[job_id]})
            for job_id, t in self.jobs.items()
            if streamed.get(job_id) and job_id not in completions
        ]

    def waiting(self) -> list[Tracked]:
        return [t for t in self.pending if t.job.state is JobState.WAITING]

    def estimations(
        self,
        counters: Counters,
        read_started: float,
        eta: Callable[[Job, int, bool], float | None],
        before: Callable[[float], Counters | None] = lambda created_at: None,
        consistent: bool = True,
        behind: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        """New rank/ETA for waiting jobs, from one counters read that began at `read_started`.

        `before(created_at)`: an earlier read that ended before that (epoch) time, if one is known.
        `behind`: per job, the waiting jobs of its group known to the stream process (any session) that
        joined after it and are counted in its bound (`SessionHub.count_behind`); without it, this
        session's own. Ranks shown are upper bounds less those (honest: each was seen committed before
        the bound was read, so the bound counts it, and it still waits behind), never below the jobs
        surely ahead; `ahead_min` is the lower bound that decides when the job's log is worth reading
        (SQS does not keep order, so a job may start before its rank is 0).
        """
        messages = []
        waiting = self.waiting()
        for tracked in waiting:
            if tracked.earlier is None:
                tracked.earlier = _surely_ahead(tracked.job, before(tracked.job.created_at))
            if tracked.earlier is not None:
                tracked.ahead_min = counters.waiting_of(tracked.job.group, tracked.earlier)
            if tracked.tails is None:
                if read_started < tracked.seen_at or not consistent:
                    continue  # this read may not count the job's admission: its tails would be optimistic
                tracked.tails, tracked.tails_at = counters.tails(tracked.job.group), read_started
            later = behind.get(tracked.job.job_id) if behind is not None else None
            if later is None:
                later = sum(1 for other in waiting if _behind(other, tracked))
            bound = counters.rank(tracked.job.group, tracked.tails)
            rank = max(0, bound - later)
            if tracked.ahead_min is not None:
                rank = max(rank, min(bound, tracked.ahead_min))
            if tracked.last_estimation is not None:
                rank = min(rank, tracked.last_estimation[0])
            # As Gradio's, the line counts the job itself: a read taken as a worker claims it shows none left.
            size = max(counters.queue_size(tracked.job.group), rank + 1)
            message = _estimation(tracked, rank, size, eta)
            if message is not None:
                messages.append(message)
        return messages

    def at_front(self, counters: Counters | None, short_line: Callable[[Job], int]) -> bool:
        """Whether a waiting job may start any moment: rank 0, or, until its first rank is known (the
        next counters tick), a line no longer than `short_line(job)` when last read."""
        return any(_at_front(t, counters, short_line) for t in self.waiting())

    def ranked(self, counters: Counters | None, short_line: Callable[[Job], int]) -> bool:
        """Whether some waiting job needs the shared counters: its rank can still change (it is not at
        the front), it has no rank yet, or no counters were read yet. A job at the front is read for
        directly once it has its first rank (as Gradio, a visitor who waits is shown a place: "1/1")."""
        return any(
            counters is None or t.last_estimation is None or not _at_front(t, counters, short_line)
            for t in self.waiting()
        )

    def running(self) -> list[Job]:
        return [t.job for t in self.pending if t.job.state is JobState.RUNNING]

    def far(self, counters: Counters | None, short_line: Callable[[Job], int]) -> list[Job]:
        """Waiting jobs that are not at the front: their log is not read on a schedule, so a worker's
        finish notice is what tells that one of them ran (SQS keeps no order)."""
        return [t.job for t in self.waiting() if not _at_front(t, counters, short_line)]


def _order(tracked: Tracked) -> tuple[float, str]:
    """The order jobs joined in (their creation time; the id breaks a tie)."""
    return tracked.job.created_at, tracked.job.job_id


def _estimation(
    tracked: Tracked, rank: int, size: int, eta: Callable[[Job, int, bool], float | None]
) -> dict[str, Any] | None:
    """The job's estimation message, when its place or size changed, or its first ETA became known.

    Still waiting when a read that began after it was seen waiting gives its rank, it waits for a busy
    slot even at the front (a free one takes a job within its receive and claim). The ETA counts that
    wait, as Gradio's counts the running jobs' time left (a job joined behind a 6 s run waits up to 12 s,
    not its own 6). A place unchanged is told again when its first ETA becomes known (the function's
    first run has ended), as Gradio's next message gives one."""
    unchanged = (rank, size) == tracked.last_estimation
    if unchanged and tracked.eta is not None:
        return None
    expected = eta(tracked.job, rank, True)
    if unchanged and expected is None:
        return None
    tracked.last_estimation = (rank, size)
    tracked.eta = (expected, time.monotonic()) if expected is not None else None
    return protocol.estimation(tracked.job.job_id, rank, size, expected)


def _behind(other: Tracked, tracked: Tracked) -> bool:
    """Whether `other` waits behind `tracked` and is counted in its bound: same group, joined later,
    and seen committed before the read that gave the bound began."""
    return (
        other.job.group == tracked.job.group
        and _order(other) > _order(tracked)
        and tracked.tails_at is not None
        and other.seen_at <= tracked.tails_at
    )


def count_behind(waiting: Iterable[Tracked], read_started: float, every_at_read: bool = False) -> dict[str, int]:
    """Per waiting job, how many of `waiting` are behind it and counted in its bound (`_behind`); a job
    without a bound yet (every job, with `every_at_read`) is counted as if this read, begun at `read_started`,
    gave it. One sort and a binary search per job, whatever the crowd (a dominance count: joined later,
    seen before the bound)."""
    by_group: dict[str, dict[str, tuple[tuple[float, str], float, float]]] = {}
    for tracked in waiting:
        bound_at = tracked.tails_at if tracked.tails_at is not None and not every_at_read else read_started
        jobs = by_group.setdefault(tracked.job.group, {})
        known = jobs.get(tracked.job.job_id)  # one job tracked by two streams of its session: the earlier
        seen = tracked.seen_at if known is None else min(known[1], tracked.seen_at)  # bound counts fewer
        jobs[tracked.job.job_id] = (_order(tracked), seen, bound_at if known is None else min(known[2], bound_at))
    counts: dict[str, int] = {}
    for jobs in by_group.values():
        seen_later: list[float] = []
        for job_id, (_, seen, bound_at) in sorted(jobs.items(), key=lambda item: item[1][0], reverse=True):
            counts[job_id] = bisect.bisect_right(seen_later, bound_at)
            bisect.insort(seen_later, seen)
    return counts


def rebound(waiting: list[Tracked], counters: Counters, read_started: float) -> dict[str, int]:
    """Move each waiting job's bound to this strongly consistent read, begun at `read_started`, where
    that shows it a better place, and return `count_behind` for the bounds as they are then.

    A job's first bound counts every job committed before it was read, and takes off only the later
    ones seen before that; visitors who open their streams one after another are seen after it, so the
    first to open stayed behind all of them. This read is a bound too (it counts every job seen before
    it began), so the lower of the two is as honest and shows each its own place, as Gradio does."""
    old, now = count_behind(waiting, read_started), count_behind(waiting, read_started, every_at_read=True)
    movable = [t for t in waiting if t.tails is not None and t.seen_at <= read_started]
    better = {t.job.job_id for t in movable if _ranks_better(t, counters, now, old)}
    for tracked in movable:  # a job two streams of its session follow moves in both
        if tracked.job.job_id in better:
            tracked.tails, tracked.tails_at = counters.tails(tracked.job.group), read_started
    return count_behind(waiting, read_started) if better else old


def _ranks_better(tracked: Tracked, counters: Counters, now: Mapping[str, int], old: Mapping[str, int]) -> bool:
    """Whether `counters` as the job's bound (`now`: the jobs behind it in that) shows it a better place
    than its bound does (`old`: the jobs behind it in its bound)."""
    group, job_id = tracked.job.group, tracked.job.job_id
    at_read = counters.rank(group, counters.tails(group)) - now[job_id]
    return tracked.tails is not None and at_read < counters.rank(group, tracked.tails) - old[job_id]


def _surely_ahead(job: Job, earlier: Counters | None) -> list[int] | None:
    """Per shard, the tail of jobs surely ahead of `job`: from this process's read that ended before the
    job was created, or from the read its join was admitted by (stored with the job), whichever is newer."""
    known = [tails for tails in (earlier.tails(job.group) if earlier else None, job.ahead) if tails is not None]
    if not known:
        return None
    return [max(column) for column in zip(*known, strict=False)] if len(known) > 1 else known[0]


def _at_front(tracked: Tracked, counters: Counters | None, short_line: Callable[[Job], int]) -> bool:
    """Every job known ahead of it has started (and its shown rank is within two batches: a bound from
    a read long before the job joined leaves many unknown ahead), or its rank is 0, or, before its
    first rank, the line was short."""
    shown, line = tracked.last_estimation, short_line(tracked.job)
    size = counters.queue_size(tracked.job.group) if counters is not None else None
    near = shown[0] <= 2 * line if shown is not None else size is None or size <= 2 * line
    if tracked.ahead_min == 0 and near:
        return True
    if shown is not None:
        return shown[0] == 0
    return size is None or size <= line


def _news(tracked: Tracked, batch_s: float | None) -> list[dict[str, Any]]:
    job = tracked.job
    out: list[dict[str, Any]] = []
    if job.state is JobState.WAITING:
        return out
    if not tracked.started and job.state is not JobState.CANCELLED:
        tracked.started = True
        if tracked.last_estimation is None:
            # As Gradio: a job's first message is its estimation, even when it started at once.
            tracked.last_estimation = (0, 1)
            out.append(protocol.estimation(job.job_id, 0, 1, batch_s))
        out.append(protocol.process_starts(job.job_id, batch_s))
    new = job.chunks[tracked.chunks :]
    if job.progress is not None and job.progress != tracked.progress and job.state is JobState.RUNNING:
        # In the order they happened: the chunks yielded before this progress was reported, then it.
        before = max(0, (job.progress_after or 0) - tracked.chunks)
        out.extend(new[:before])
        new = new[before:]
        tracked.progress = job.progress
        out.append(job.progress)
    out.extend(new)
    tracked.chunks = len(job.chunks)
    if job.cancel_delivered or (job.cancel_requested and job.state is JobState.RUNNING):
        # Cancelled while it runs: the visitor is told at once, as Gradio answers a cancel (a function that
        # returns once runs on to its end, its slot held; a generator stops at its next output). The
        # stream leaves a marker as it closes, so that no stream delivers the job's end later.
        tracked.completed = True
        tracked.job = job.model_copy(update={"cancel_delivered": True})
        out.append(protocol.cancelled(job.job_id))
    elif job.state in TERMINAL_STATES:
        tracked.completed = True
        out.append(job.result or protocol.failed(job.job_id, None))
    return out


class SessionHub:
    """One per stream process: the shared counters reader, and the registry of open streams."""

    def __init__(self, app: App, settings: Settings, store: StreamStore, estimator: Estimator) -> None:
        self.app = app
        self.settings = settings
        self.store = store
        self.estimator = estimator
        self.counters: tuple[float, Counters] | None = None
        """(monotonic time the read began, the counters) of the latest tick."""
        self.consistent = True
        """Whether the latest tick's read was strongly consistent (only such a read may set a first rank)."""
        self._tick_now = settings.counters_tick_s
        """The gap the reader last chose before its next read (`tick_s`)."""
        self.behind: dict[str, int] = {}
        """Per waiting job here, the jobs here behind it in its bound (`count_behind`), as of the latest tick."""
        self.history: deque[tuple[float, Counters]] = deque(maxlen=HISTORY)
        """(epoch time the read ended, the counters) of the latest ticks, oldest first."""
        self._tick: asyncio.Event | None = None
        self._reader: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.open: dict[str, list[SessionStream]] = {}
        self.reads = 0
        """Counters reads made so far (one per tick, whatever the number of sessions)."""
        self._soon: asyncio.Event | None = None
        self._joins: dict[str, int] = {}
        self._joined: dict[str, int] = {}
        """Per session with a stream here, how many joins of it this process has finished serving."""
        self._forgetting: dict[str, dict[str, Job]] = {}
        """Per session, the delivered jobs its streams here are deleting now."""
        self._forgotten: dict[str, dict[str, tuple[float, Job]]] = {}
        """Per session, the jobs its streams here deleted (monotonic time, job), each kept `FORGOTTEN_KEPT_S`."""
        self._forgotten_at: deque[tuple[float, str, str]] = deque()
        """(monotonic time deleted, session, job id) of `_forgotten`, oldest first."""
        self._undeleted: list[Job] = []
        """Delivered jobs whose delete AWS refused: deleted with the next, and skipped by reads here meanwhile."""
        self._sent: dict[str, tuple[float, dict[str, int]]] = {}
        """Per session, (monotonic time noted, job id → generator messages sent) of streams here that their
        clients dropped, kept `SENT_KEPT_S` (a read made as the marker is written may have missed it)."""
        self._joins_lock = threading.Lock()
        self._committed: dict[str, float] = {}
        """Per job whose join this process served, when (monotonic) its answer came: committed by then.
        A stream opens after its join's answer, so the job's first read here comes later; jobs counted by
        a read begun meanwhile are known behind those joined before them from this time on, not only from
        that first read (`count_behind`). Kept `COMMITTED_KEPT_S`."""
        self._committed_at: deque[tuple[float, str]] = deque()
        self._finished_after: dict[str, str] = {}
        """Per function, the key after which finish notices are read next."""
        self.notice_reads = 0
        self._to_forget: list[tuple[list[Job], asyncio.Future[None]]] = []
        self._forgetter: asyncio.Task[None] | None = None
        self.serves_joins = False
        """Whether this process also answers joins (`HANG_UP_WAIT_S`)."""
        self._hanging: dict[str, list[asyncio.Event]] = {}
        """Per session, its streams here that sent `close_stream` and whose client has not hung up yet."""
        self._told: dict[str, asyncio.Event] = {}
        """Per job whose cancel this process is answering, set once a stream here has sent its completion."""
        self._shown_offsets: deque[tuple[float, float]] = deque(maxlen=FINISH_SAMPLES)
        """(monotonic time noted, seconds from its stream's opening to its first live output, else its end) of
        jobs that ran, latest last (`shown_after_open`)."""

    def attach(self, stream: SessionStream) -> None:
        self._loop = asyncio.get_running_loop()
        self.open.setdefault(stream.session_hash, []).append(stream)

    def detach(self, stream: SessionStream) -> None:
        streams = self.open.get(stream.session_hash, [])
        if stream in streams:
            streams.remove(stream)
        if not streams:
            self.open.pop(stream.session_hash, None)
            with self._joins_lock:
                self._joined.pop(stream.session_hash, None)

    @contextmanager
    def joining(self, session_hash: str) -> Iterator[None]:
        """Around a join served by this process: its session's streams here do not close meanwhile.

        gradio_client tags each job with the reader open when its join returned, and a reader that gets
        `close_stream` cancels its jobs; Gradio never closes a stream while a join of its session is
        being handled. A stream whose last read missed a job committed during that read would close
        on it. Joins served by another process (the API Lambda) are not seen here: that window is a
        read's length (documented in the README)."""
        with self._joins_lock:
            self._joins[session_hash] = self._joins.get(session_hash, 0) + 1
        try:
            yield
        finally:
            with self._joins_lock:
                left = self._joins[session_hash] - 1
                if left:
                    self._joins[session_hash] = left
                else:
                    del self._joins[session_hash]
                if session_hash in self.open:
                    self._joined[session_hash] = self._joined.get(session_hash, 0) + 1
            self.poke(session_hash)

    def committed(self, job_id: str) -> None:
        """This process got the answer of the job's join now: the job is committed (`committed_at`)."""
        now = time.monotonic()
        with self._joins_lock:
            self._committed[job_id] = now
            self._committed_at.append((now, job_id))
            while self._committed_at and now - self._committed_at[0][0] > COMMITTED_KEPT_S:
                self._committed.pop(self._committed_at.popleft()[1], None)

    def committed_at(self, job_id: str) -> float | None:
        """When this process got the answer of the job's join, if it served it recently (`committed`)."""
        return self._committed.get(job_id)

    def forgetting(self, session_hash: str, jobs: list[Job], started: bool) -> None:
        """Jobs whose completion a closed stream delivered and is deleting now (`started`) or has deleted."""
        held = self._forgetting.setdefault(session_hash, {})
        if started:
            held.update((job.job_id, job) for job in jobs)
            return
        for job in jobs:
            held.pop(job.job_id, None)
        if not held:
            del self._forgetting[session_hash]
        now = time.monotonic()
        while self._forgotten_at and now - self._forgotten_at[0][0] > FORGOTTEN_KEPT_S:
            noted, session, job_id = self._forgotten_at.popleft()
            kept = self._forgotten.get(session, {})
            if kept.get(job_id, (None,))[0] == noted:  # not noted again since
                del kept[job_id]
            if not kept:
                self._forgotten.pop(session, None)
        for job in jobs:
            self._forgotten.setdefault(session_hash, {})[job.job_id] = (now, job)
            self._forgotten_at.append((now, session_hash, job.job_id))

    def forgotten(self, session_hash: str) -> dict[str, Job]:
        """The session's jobs that streams here delivered, as delivered: being deleted, deleted lately (a
        read begun before the delete landed returns them), or whose delete failed."""
        undeleted = {job.job_id: job for job in self._undeleted if job.session_hash == session_hash}
        kept = {job_id: job for job_id, (_, job) in self._forgotten.get(session_hash, {}).items()}
        return {**undeleted, **kept, **self._forgetting.get(session_hash, {})}

    def noting_sent(self, session_hash: str, jobs: list[Job]) -> None:
        """A dropped stream of the session sent these jobs' first `chunks_sent` generator messages."""
        now = time.monotonic()
        for session in [key for key, (noted, _) in self._sent.items() if now - noted > SENT_KEPT_S]:
            del self._sent[session]
        if jobs:
            counts = self._sent.get(session_hash, (now, {}))[1]
            counts.update({job.job_id: job.chunks_sent for job in jobs})
            self._sent[session_hash] = (now, counts)

    def with_sent(self, session_hash: str, jobs: list[Job]) -> list[Job]:
        """`jobs` as the markers of dropped streams here say, for a read that ran as one was written."""
        counts = self._sent.get(session_hash, (0.0, {}))[1]
        return [
            job.model_copy(update={"chunks_sent": counts[job.job_id]})
            if counts.get(job.job_id, 0) > job.chunks_sent
            else job
            for job in jobs
        ]

    async def forget(self, jobs: list[Job]) -> None:
        """Delete a closing stream's delivered jobs; returns once they are deleted (or the delete failed:
        they are then deleted with the next, and streams here skip them meanwhile; their items expire by
        TTL at the latest). Streams of this process that close together share batch writes (25 deletes to
        a call): what arrives while one write is in flight goes in the next."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._to_forget.append((jobs, done))
        if self._forgetter is None or self._forgetter.done() or self._forgetter.get_loop() is not loop:
            self._forgetter = loop.create_task(self._forget_pending())
        await done

    async def _forget_pending(self) -> None:
        if self.open:
            await asyncio.sleep(FORGET_GATHER_S)
        while self._to_forget:
            taken, self._to_forget = self._to_forget, []
            jobs, self._undeleted = [*self._undeleted, *(job for jobs, _ in taken for job in jobs)], []
            try:
                await anyio.to_thread.run_sync(self.store.forget_all, jobs)
            except Unavailable:
                logger.warning("could not forget %d delivered jobs; deleted with the next", len(jobs))
                self._undeleted = jobs[-UNDELETED_MAX:]
            except Exception:
                logger.exception("forgetting %d delivered jobs failed; their items expire by TTL", len(jobs))
            for _, done in taken:
                if not done.done():
                    done.set_result(None)

    def closing(self, session_hash: str) -> asyncio.Event | None:
        """Just before a stream of the session sends `close_stream`: from then until `hung_up`, a join of the
        session waits (`after_hang_up`). Registered before the frame, since a join may come the moment it
        leaves (another thread of the client), while the stream still deletes what it delivered. None
        where this process serves no joins."""
        if not self.serves_joins:
            return None
        gone = asyncio.Event()
        self._hanging.setdefault(session_hash, []).append(gone)
        return gone

    async def hang_up(self, closed_at: float, gone: asyncio.Event | None) -> None:
        """After `close_stream` (sent at `closed_at`, monotonic) and the stream's last writes: wait for the
        client to hang up, at most until `HANG_UP_WAIT_S` after the frame. The client's hang-up cancels
        this wait (the SSE layer cancels the response); `hung_up` ends it either way."""
        if gone is not None:
            await asyncio.sleep(max(0.0, closed_at + HANG_UP_WAIT_S - time.monotonic()))

    def hung_up(self, session_hash: str, gone: asyncio.Event | None) -> None:
        """The stream that registered `gone` (`closing`) has ended: the session's joins answer."""
        if gone is None:
            return
        gone.set()
        held = self._hanging.get(session_hash, [])
        if gone in held:
            held.remove(gone)
        if not held:
            self._hanging.pop(session_hash, None)

    async def after_hang_up(self, session_hash: str) -> None:
        """Before a join of this session answers: until each of its streams here that sent `close_stream`
        has been hung up on by its client (at most `HANG_UP_WAIT_S` after that frame), so that the new job
        is not tagged to a reader about to close."""
        for gone in list(self._hanging.get(session_hash, [])):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), HANG_UP_WAIT_S)

    def is_joining(self, session_hash: str) -> bool:
        return session_hash in self._joins

    def joins_served(self, session_hash: str) -> int:
        """Joins of this session served here while it had a stream here: a stream compares the figure
        from before a read with the one after it, since a join that ended during the read may have
        committed after the read saw the log (its poke can reach the loop after the read's answer)."""
        with self._joins_lock:
            return self._joined.get(session_hash, 0)

    @contextmanager
    def awaiting_completion(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set once a stream here has sent the job's completion (registered before the cancel is
        written, so that a stream quick to send it is not missed)."""
        told = self._told[job_id] = asyncio.Event()
        try:
            yield told
        finally:
            self._told.pop(job_id, None)

    def completion_sent(self, job_id: str) -> None:
        told = self._told.get(job_id)
        if told is not None:
            told.set()

    def poke(self, session_hash: str) -> None:
        """Something happened to this session here (a join, a cancel): its streams read its log now.
        Safe to call from any thread."""
        loop = self._loop
        if loop is None or session_hash not in self.open:
            return
        for stream in list(self.open.get(session_hash, [])):
            loop.call_soon_threadsafe(stream.wake.set)

    async def next_tick(self, soon: bool = False) -> asyncio.Event:
        """The event set at the next counters read; starts the reader when it is not running.

        `soon`: a stream has just seen a new job and needs its first rank: the next read comes after
        `FRESH_GAP_S` rather than a whole tick (all streams asking meanwhile share it)."""
        if self._tick is None:
            self._tick = asyncio.Event()
        if self._soon is None:
            self._soon = asyncio.Event()
        if soon:
            self._soon.set()
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_counters())
        return self._tick

    def recent_counters(self) -> Counters | None:
        """The latest counters read, if it began within two ticks (an older one may predate a crowd)."""
        if self.counters is None or time.monotonic() - self.counters[0] > 2 * self._tick_now:
            return None
        return self.counters[1]

    def _wanted(self) -> bool:
        """Whether some stream here has a waiting job whose rank can still change (or is not known)."""
        counters = self.recent_counters()
        return any(
            stream.view.ranked(counters, self.short_line) for streams in self.open.values() for stream in streams
        )

    def _counted_read(self, consistent: bool) -> Counters:
        """One counters read, counted in the thread that makes it: a read cut short by shutdown before
        its thread began never reached AWS, one under way still does."""
        self.reads += 1
        return self.store.counters(consistent)

    async def _read_counters(self) -> None:
        """Read the counters (and the finish notices of far-back jobs) every `counters_tick_s` while a
        stream here has a waiting job whose rank can still change."""
        if self._soon is None:
            self._soon = asyncio.Event()
        while self._wanted():
            started = time.monotonic()
            # This read serves every early read asked for before it began; one asked for from now on
            # (a job seen after this read began) gets the next read, `FRESH_GAP_S` after this one.
            self._soon.clear()
            consistent = self._first_rank_wanted()
            try:
                counters = await anyio.to_thread.run_sync(self._counted_read, consistent)
                self.counters, self.consistent = (started, counters), consistent
                waiting = list(self._waiting())
                self.behind = rebound(waiting, counters, started) if consistent else count_behind(waiting, started)
                self.history.append((time.time(), counters))
            except Unavailable as error:
                logger.warning("counters read failed (%s); retrying", error.detail)
            await self.refresh_estimates()
            await self._read_finished()
            tick, self._tick = self._tick, asyncio.Event()
            if tick is not None:
                tick.set()
            await anyio.sleep(FRESH_GAP_S)
            self._tick_now = self.tick_s()
            with anyio.move_on_after(max(0.0, self._tick_now - FRESH_GAP_S)):
                await self._soon.wait()

    def tick_s(self) -> float:
        """The gap before the next counters read: `counters_tick_s` while a visitor here may be near the
        front (or its expected wait is not known), longer while every one waits far back: a quarter of
        the shortest expected wait, at most `SLOW_TICK_S`. A visitor 30 s back is told its place every
        2 s instead of twice a second; on Lambda on demand, where each visitor's stream reads the
        counters for itself, that is a third of the reads (and of the load on the counters' items).
        A new job's first rank does not wait for it (`next_tick(soon=True)`)."""
        base = self.settings.counters_tick_s
        now = time.monotonic()
        shortest: float | None = None
        for tracked in self._waiting():
            if tracked.eta is None:
                return base
            left = tracked.eta[0] - (now - tracked.eta[1])
            shortest = left if shortest is None else min(shortest, left)
        if shortest is None:
            return base
        return min(max(base, shortest / TICKS_PER_ETA), max(base, SLOW_TICK_S))

    def _first_rank_wanted(self) -> bool:
        """Whether a waiting job here has no rank bound yet: that read must be strongly consistent (it must
        count the job's own admission). Later ticks only see the line move: an eventually consistent
        read, at half the read units, may lag, which shows a rank a tick late, never a better one."""
        return any(tracked.tails is None for tracked in self._waiting())

    def _waiting(self) -> Iterator[Tracked]:
        """The waiting jobs of every stream open here."""
        for streams in self.open.values():
            for stream in streams:
                yield from stream.view.waiting()

    async def _read_finished(self) -> None:
        """Once per tick, for each function with far-back jobs here, read the workers' finish notices since
        the last read (one query for all its sessions) and wake the streams whose jobs are named."""
        counters = self.counters[1] if self.counters else None
        far: dict[str, dict[str, list[SessionStream]]] = {}
        oldest: dict[str, float] = {}
        for streams in self.open.values():
            for stream in streams:
                for job in stream.view.far(counters, self.short_line):
                    far.setdefault(job.api_name, {}).setdefault(job.job_id, []).append(stream)
                    oldest[job.api_name] = min(oldest.get(job.api_name, job.created_at), job.created_at)
        for api_name, jobs in far.items():
            # From the last read, but never before the oldest far-back job here joined (after a quiet
            # spell the last read may be old: its notices since then name none of these jobs).
            floor = f"{int((oldest[api_name] - NOTICE_MARGIN_S) * 1000):013d}"
            after = max(self._finished_after.get(api_name, floor), floor)
            try:
                notices = await anyio.to_thread.run_sync(self.store.finished_since, api_name, after)
            except Unavailable as error:
                logger.warning("finish notices read failed (%s); the rescan covers it", error.detail)
                continue
            self.notice_reads += 1
            for _, job_ids in notices:
                for job_id in job_ids:
                    for stream in jobs.get(job_id, []):
                        stream.wake.set()
            if notices:
                # Notices carry their worker's clock: read again a margin back, so a late one is not skipped.
                newest_ms = int(notices[-1][0].split("#", 1)[0])
                self._finished_after[api_name] = f"{max(0, newest_ms - int(NOTICE_MARGIN_S * 1000)):013d}"

    async def refresh_estimates(self, jobs: list[Job] | None = None) -> None:
        """Read, in a thread, the statistics and fleets the loop found stale (and those of `jobs`' functions,
        before their first estimation): `eta`, `batch_s` and `served` run on the event loop and only
        ever take cached values."""
        names = {job.api_name for job in jobs or []}
        for function in self.app.functions:
            if function.api_name in names:
                self.estimator.note(function)
        if not self.estimator.due:
            return
        try:
            await anyio.to_thread.run_sync(self.estimator.load_due)
        except Unavailable as error:
            logger.warning("statistics read failed (%s); estimates stay as they were", error.detail)

    def before(self, created_at: float) -> Counters | None:
        """The newest counters read that ended before `created_at` (epoch), if still remembered."""
        found = None
        for ended, counters in self.history:
            if ended >= created_at:
                break
            found = counters
        return found

    def eta(self, job: Job, rank: int, busy: bool | None = None) -> float | None:
        try:
            return self.estimator.eta(self.app.get(job.api_name), rank, wait=False, busy=busy)
        except (KeyError, Unavailable):
            return None

    def shown_after_open(self, offset_s: float) -> None:
        """A job that ran, joined before its stream opened, had its first live output or, without one, its
        end recorded `offset_s` after that opening: its visitor could be shown something from then."""
        self._shown_offsets.append((time.monotonic(), offset_s))

    def first_read_s(self) -> float:
        """How long a stream that has just opened waits before its first read of its session's log, at most
        `FIRST_READ_MAX_S`: until the jobs of the streams opened here lately had something to show (the
        third quartile of the last `FINISH_SAMPLES` within `FINISH_SAMPLE_KEPT_S`, from each stream's
        opening to its job's first live output recorded, or its end for a job without one, plus
        `FINISH_MARGIN_S`), so that a quick job is found done by the first read, a chat's answer with its
        first token, and its visitor shown it then. Without such jobs: the shortest measured batch cycle (claim to
        results recorded) among the app's functions this process knows (0 before any is known).

        A client opens its stream a while after its join is answered (gradio_client about 30 ms, which
        a whole cycle counted from the opening overshot: its result was read after the client's next look
        at its messages, 50 ms later). A read sooner than the end can see at most the job's start (the
        next read is then when the batch is expected to end); later, the visitor waits. What waits is at
        most a tenth of a second of the first rank or start shown; a poke (a join or cancel served here)
        still reads at once."""
        now = time.monotonic()
        recent = sorted(offset for noted, offset in self._shown_offsets if now - noted < FINISH_SAMPLE_KEPT_S)
        if recent:
            return min(FIRST_READ_MAX_S, max(0.0, recent[(3 * len(recent)) // 4] + FINISH_MARGIN_S))
        cycles = self.estimator.known_cycles()
        return min(FIRST_READ_MAX_S, *cycles) if cycles else 0.0

    def batch_s(self, api_name: str) -> float | None:
        try:
            return self.estimator.batch_s(self.app.get(api_name), wait=False)
        except (KeyError, Unavailable):
            return None

    def served(self, job: Job) -> bool:
        """Whether a worker of the job's function is live (cached; unknown counts as served)."""
        try:
            fleet = self.estimator.fleet(self.app.get(job.api_name), wait=False)
            return fleet is None or bool(fleet.workers)
        except (KeyError, Unavailable):
            return True

    def cannot_start(self, job: Job) -> str | None:
        """What the job's visitor is told when no worker serving its function is live and the latest
        could not start (`StartFailure.stands_for`), by a fleet read taken after the job joined (a read
        from before may predate the worker that started since; cached, None when unknown). A page's lanes
        run in the workers of the app's first function (`App.host_of`), whose failure stands for them."""
        try:
            host = self.app.host_of(self.app.get(job.api_name))
            fleet = self.estimator.fleet(host, wait=False)
        except (KeyError, Unavailable):
            return None
        failure = fleet.cannot_start if fleet is not None and fleet.read_at > job.created_at else None
        if failure is None or not failure.stands_for(job.created_at):
            return None
        return start_failure_message(host.api_name, failure.kind, failure.detail, self.app.show_error)

    def short_line(self, job: Job) -> int:
        """A line this short starts within the first batch: its job is read for before its rank is known."""
        try:
            return self.app.get(job.api_name).receive_batch_size
        except KeyError:
            return 1

    def streaming(self, api_name: str) -> bool:
        try:
            function = self.app.get(api_name)
        except KeyError:
            return False
        return function.is_generator or function.progress_arg is not None

    async def release_if_gone(self, session_hash: str, pending: list[Job]) -> None:
        """The client went away mid-session: after the grace period, unless a newer stream of the session
        has opened here meanwhile, end its jobs as Gradio does when a client disconnects: a waiting one is
        cancelled (its place goes to the next), a running one is asked to stop (a generator stops at its
        next output; a function that returns once runs on, as in Gradio), so the visitors behind them do
        not wait for abandoned work.

        On Lambda a dropped client is not seen (a streamed response runs on) and work after the
        response is frozen, so there the jobs stay queued and workers run them.
        """
        await anyio.sleep(self.settings.session_grace_s)
        if session_hash in self.open:
            return
        released = stopped = 0
        for job in pending:
            try:
                if job.state is JobState.WAITING and await anyio.to_thread.run_sync(
                    self.store.end_waiting, job, JobState.CANCELLED, protocol.cancelled(job.job_id)
                ):
                    released += 1
                elif await anyio.to_thread.run_sync(self.store.request_cancel, job):
                    stopped += 1  # it was running, or started during the grace period
            except Unavailable:
                logger.warning("could not end a dropped session's job %s", job.job_id)
        logger.info("a dropped session's jobs: %d waiting released, %d running asked to stop", released, stopped)


class SessionStream:
    """One open `/queue/data` connection of a session."""

    def __init__(self, hub: SessionHub, session_hash: str, poll: PollPolicy, joined_again: bool = True) -> None:
        """`joined_again`: whether the session's client may join again while this stream closes (a Gradio
        client's `/queue/data` stream; not a curl `/call` one, whose session is its one call)."""
        self.hub = hub
        self.joined_again = joined_again
        self.store = hub.store
        self.session_hash = session_hash
        self.poll = poll
        self.view = SessionView(session_hash, resumes=joined_again)
        self.wake = asyncio.Event()
        self.closed = False
        self.closed_at = 0.0
        """When `close_stream` was sent (monotonic)."""
        self._gone: asyncio.Event | None = None
        """Registered with the hub just before `close_stream` (`SessionHub.closing`)."""
        self.reads = 0
        self.opened_at = time.time()
        """When the stream opened (epoch): a sample of `SessionHub.shown_after_open` counts from it."""
        self._timed: set[str] = set()
        """Jobs whose sample of `SessionHub.shown_after_open` this stream has given."""

    async def messages(self) -> AsyncGenerator[dict[str, Any], None]:
        """Every message of the session's jobs in order, with rank refreshes, then `close_stream`.

        Heartbeats are the SSE layer's job. If the client drops before `close_stream`, its jobs
        are ended after the grace period unless it reconnects (`SessionHub.release_if_gone`), and the
        completions it was sent are forgotten: a stream it opens again sends what it missed, not what it
        had (Gradio sends each message once; `@gradio/client`, handed a cancelled job's completion twice,
        failed on it again and left the session stuck).
        """
        self.hub.attach(self)
        sent: set[str] = set()
        streamed: Counter[str] = Counter()
        try:
            async for message in self._messages():
                yield message
                # The SSE layer resumes us once it has written the frame.
                if message.get("msg") == "process_completed" and message.get("event_id"):
                    sent.add(str(message["event_id"]))
                    self.hub.completion_sent(str(message["event_id"]))
                elif message.get("msg") in STREAMED and message.get("event_id"):
                    streamed[str(message["event_id"])] += 1  # a place in the job's `chunks`
        finally:
            self.hub.detach(self)
            pending = [t.job for t in self.view.pending]
            if self.closed:
                try:
                    await self._forget(self.view.to_forget)  # registered before `close_stream` went
                    await self.hub.hang_up(self.closed_at, self._gone)
                finally:
                    self.hub.hung_up(self.session_hash, self._gone)
            else:
                had = [job for job in self.view.delivered if job.job_id in sent]
                partly = self.view.partly_sent(streamed, sent)
                self.hub.forgetting(self.session_hash, had, True)
                self.hub.noting_sent(self.session_hash, partly)
                await self._forget(had)
                await self._note_sent(partly)
                if pending:
                    asyncio.get_running_loop().create_task(self.hub.release_if_gone(self.session_hash, pending))

    async def _messages(self) -> AsyncIterator[dict[str, Any]]:
        opened = time.monotonic()
        interval = self.poll.min_s
        next_read = last_read = opened
        await self._sleep_until(opened + self.hub.first_read_s())
        while time.monotonic() - opened < self.hub.settings.stream_max_s:
            if time.monotonic() >= next_read or self.wake.is_set():
                self.wake.clear()
                joins = self.hub.joins_served(self.session_hash)
                news = await self._read()
                for message in news:
                    yield message
                last_read = time.monotonic()
                if self.hub.joins_served(self.session_hash) != joins:
                    self.wake.set()  # a join ended during the read, which may have missed it: read again
                elif self._finished(last_read - opened):
                    # `close_stream` right behind the last completion, as Gradio sends it: the client's
                    # next join must not reach a reader that is about to close. The delivered jobs are
                    # forgotten after that frame but before the response ends (on Lambda nothing runs
                    # after it), shielded from the client's disconnect; a stream of the session opened
                    # here meanwhile treats them as delivered.
                    self.hub.forgetting(self.session_hash, self.view.to_forget, True)
                    self._close()
                    yield protocol.close_stream()
                    return
                interval = self.poll.min_s if news else self.poll.next_s(interval, self._ceiling())
            for message in self._estimations():
                yield message
            if await self._give_up_unserved():
                self.wake.set()
            next_read = self._next_read(interval, last_read)
            await self._sleep_until(min(next_read, opened + self.hub.settings.stream_max_s))
        # The stream's bound (on Lambda, under the 15-minute limit of a response): no Gradio client
        # reconnects a data stream, so each job it still waits for is told plainly, a waiting one is
        # cancelled (its place goes to the next; nobody would receive its result), and the stream closes.
        for message in await self._out_of_time():
            yield message
        self.hub.forgetting(self.session_hash, self.view.to_forget, True)  # as at a normal close, before it
        self._close()
        yield protocol.close_stream()

    def _close(self) -> None:
        """About to send `close_stream`: a Gradio client's joins of the session wait for its hang-up."""
        self.closed, self.closed_at = True, time.monotonic()
        if self.joined_again:
            self._gone = self.hub.closing(self.session_hash)

    async def _out_of_time(self) -> list[dict[str, Any]]:
        """An error completion for each job still pending at the stream's bound; waiting jobs end (and are
        forgotten with the delivered ones). A running job is asked to stop (nobody will receive its result;
        a generator stops at its next output) and its end counts as delivered, as a cancel's does: the
        session's next stream must not send it a second completion."""
        limit = f"the {self.hub.settings.stream_max_s:.0f} s limit of one connection (STREAM_MAX_S)"
        messages = []
        for tracked in self.view.pending:
            job = tracked.job
            message = protocol.failed(
                job.job_id,
                f"This wait reached {limit} before the job started, so it was cancelled; please try again "
                "when the queue is shorter.",
            )
            ended = job.state is JobState.WAITING and await self._call(
                self.store.end_waiting, job, JobState.CANCELLED, message
            )
            if not ended:
                message = protocol.failed(
                    job.job_id, f"This job was still running at {limit}; its result cannot be delivered."
                )
                await self._call(self.store.request_cancel, job)
                tracked.job = job.model_copy(update={"cancel_delivered": True})
            tracked.completed = True
            messages.append(message)
        return messages

    def _finished(self, open_s: float) -> bool:
        if self.view.pending or self.hub.is_joining(self.session_hash):
            return False
        if not self.joined_again and not self.view.jobs:
            return True  # a call's job was written before its id was answered: none here, there is none
        return bool(self.view.delivered or self.view.ended_elsewhere) or open_s >= self.poll.empty_session_s

    def _estimations(self) -> list[dict[str, Any]]:
        if self.hub.counters is None or not self.view.waiting():
            return []
        started, counters = self.hub.counters
        return self.view.estimations(
            counters, started, self.hub.eta, self.hub.before, self.hub.consistent, self.hub.behind
        )

    async def _give_up_unserved(self) -> bool:
        """Fail waiting jobs that have waited `worker_start_limit_s` while no worker of their function was
        live (no GPU capacity or quota), or whose function's latest worker could not start (its app's
        import or setup raised) while none is live: the visitor is told, and the place freed. True if
        any ended."""
        limit = self.hub.settings.worker_start_limit_s
        ended = False
        for tracked in self.view.waiting():
            job = tracked.job
            reason = self.hub.cannot_start(job)
            if reason is None and (time.time() - job.created_at <= limit or self.hub.served(job)):
                continue
            reason = reason or (
                f"No worker of {job.api_name} could be started within {limit:.0f} s (the GPU capacity or quota "
                "may be exhausted); please try again later."
            )
            message = protocol.failed(job.job_id, reason)
            ended |= bool(await self._call(self.store.end_waiting, job, JobState.FAILED, message))
        return ended

    def _ceiling(self) -> float:
        return self.poll.streaming_max_s if self._streams_soon() else self.poll.max_s

    def _streams_soon(self) -> bool:
        """Whether a job of the session whose output is shown as it comes (a generator's, or a function's
        that reports progress) runs, or is at the front of its line and may start any moment."""
        counters = self.hub.counters[1] if self.hub.counters else None
        next_up = [t.job for t in self.view.waiting() if _at_front(t, counters, self.hub.short_line)]
        return any(self.hub.streaming(job.api_name) for job in [*self.view.running(), *next_up])

    def _next_read(self, interval: float, last_read: float) -> float:
        """When to read the log next: soon while something can happen to the session, else a rescan."""
        running = self.view.running()
        counters = self.hub.counters[1] if self.hub.counters else None
        if running:
            expected = self._expected_in_s(running)
            if expected is not None and interval <= self.poll.min_s:
                # The read that saw it start: look again when the batch is expected to be recorded.
                return last_read + max(self.poll.due_min_s, expected)
            return last_read + max(interval, expected or 0.0, self._late_poll_s(running))
        if self.view.at_front(counters, self.hub.short_line):
            if self._streams_soon():
                # Its first output is shown as it comes, so its start is looked for as often as a running
                # generator's output (waiting a whole batch, a short generation's output came all at once).
                return last_read + interval
            # Next in line: it starts within about a batch (the one running ahead of it).
            return last_read + max(interval, min(self.poll.max_s, self._front_wait_s()))
        if not self.view.pending:
            return last_read + interval
        return last_read + self.hub.settings.rescan_s

    def _front_wait_s(self) -> float:
        """The shortest smoothed batch time among the functions of the session's waiting jobs: a job at
        the front starts when the batch ahead of it ends, within about that (reads are at most
        `max_s` apart, so a long batch's start still shows within half a second)."""
        times = [self.hub.batch_s(t.job.api_name) for t in self.view.waiting()]
        known = [s for s in times if s is not None]
        return min(known) if known else 0.0

    def _late_poll_s(self, running: list[Job]) -> float:
        """How often to look at a batch that runs past its expected end: an eighth of its function's
        smoothed batch time, at most `LATE_POLL_MAX_S` (0 while output streams, or before a batch time
        is known). A quarter cost a lone user of a 1 s model 0.2 s of p50 (1,079 → 1,300 ms)."""
        times = [None if self.hub.streaming(job.api_name) else self.hub.batch_s(job.api_name) for job in running]
        if not times or any(s is None for s in times):
            return 0.0
        return min(LATE_POLL_MAX_S, min(s for s in times if s is not None) / 8)

    def _expected_in_s(self, running: list[Job]) -> float | None:
        """How long until the soonest running job is expected to be recorded (0 when late; None when not
        known: a batch time not yet measured, or output that streams)."""
        lefts = []
        for job in running:
            batch_s = None if self.hub.streaming(job.api_name) else self.hub.batch_s(job.api_name)
            if batch_s is None or job.started_at is None:
                return None
            lefts.append(job.started_at + batch_s - time.time())
        return max(0.0, min(lefts, default=0.0))

    async def _sleep_until(self, deadline: float) -> None:
        """Sleep until `deadline`, the next counters tick (when a job waits), or a poke."""
        timeout = max(0.0, deadline - time.monotonic())
        waits = [asyncio.ensure_future(self.wake.wait())]
        waiting = self.view.waiting()
        counters = self.hub.recent_counters()
        if self.view.ranked(counters, self.hub.short_line):
            # A job seen waiting gets its first rank from an early read, not a whole tick later (once batch
            # cycles are known, its first read came one after the stream opened: it waits for a slot).
            fresh = any(t.tails is None for t in waiting)
            waits.append(asyncio.ensure_future((await self.hub.next_tick(soon=fresh)).wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _read(self) -> list[dict[str, Any]]:
        jobs = await self._call(self.store.read_session, self.session_hash)
        forgotten = self.hub.forgotten(self.session_hash)
        # A job read with its cancel's marker is the view's to skip (and to delete once ended). One this
        # stream still awaits that another stream of the session here delivered gets the same end here.
        kept = [job for job in jobs if job.job_id not in forgotten or job.cancel_delivered]
        owed = [forgotten[t.job.job_id] for t in self.view.pending if t.job.job_id in forgotten]
        read_ids = {job.job_id for job in kept}
        jobs = self.hub.with_sent(self.session_hash, kept + [job for job in owed if job.job_id not in read_ids])
        self.reads += 1
        await self.hub.refresh_estimates(jobs)
        completed = {t.job.job_id for t in self.view.jobs.values() if t.completed}
        messages = self.view.vanished({job.job_id for job in jobs})
        messages.extend(self.view.take(jobs, time.monotonic(), self.hub.batch_s, self.hub.committed_at))
        for tracked in self.view.jobs.values():
            job = tracked.job
            if job.job_id in self._timed or job.created_at > self.opened_at:
                continue
            # A job joined before the stream opened, as a client's is: how long after the opening it first
            # had something to show (its first live output, else its end).
            ended_here = tracked.completed and job.job_id not in completed and job.started_at is not None
            shown_at = job.first_output_at or (job.finished_at if ended_here else None)
            if shown_at is not None:
                self._timed.add(job.job_id)
                self.hub.shown_after_open(shown_at - self.opened_at)
        return messages

    async def _note_sent(self, partly: list[Job]) -> None:
        """Write how many generator messages of its running jobs this dropped stream sent (shielded)."""
        if partly:
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(self.store.note_sent, partly)
                except Exception:
                    logger.exception("noting what a dropped stream sent failed; a next stream sends it again")

    async def _forget(self, delivered: list[Job]) -> None:
        """Delete these jobs (the hub registered them as being forgotten), shielded from the client's
        disconnect; then streams of the session here no longer skip them (they are gone)."""
        try:
            if delivered:
                with anyio.CancelScope(shield=True):
                    await self.hub.forget(delivered)
        finally:
            self.hub.forgetting(self.session_hash, delivered, False)

    async def _call(self, fn: Any, *args: Any) -> Any:
        """Run a blocking store call in a thread; while AWS refuses, wait and retry (the stream stays open)."""
        while True:
            try:
                return await anyio.to_thread.run_sync(fn, *args)
            except Unavailable as error:
                logger.warning("stream read failed (%s); retrying", error.detail)
                await anyio.sleep(self.poll.outage_retry_s)
