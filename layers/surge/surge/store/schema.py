"""The item layout of the session log, documented once.

Events table (key `session_hash`, `sk`): one item per job, `sk` = the job id. Attributes: `api_name`,
`group`, `shard`, `state`, `created_at`, `attempt`, `worker_id`, `started_at` (set by the claim, so a
started job costs no extra write), `progress` (the latest progress message, JSON), `chunks` (the
generator's messages, JSON strings, appended), `result` (the `process_completed` message, JSON),
`finished_at`, `first_output_at` (when the write of its first live output was sent, set by that write;
the finish's put drops it), `ahead` (per shard, the group's tail at the admission read before the job was
counted: jobs surely ahead of it), and `expires_at` (TTL, `job_ttl_s` after creation). Inputs are not
stored: they travel in the job's SQS message. A stream that has delivered a job's completion deletes the item.

A result over `INLINE_RESULT_BYTES` (a plot's JSON, a large table: DynamoDB refuses items over 400 KB) is
kept beside its job in the same partition, in parts `<job id>#part#<k>` (attribute `part`, a slice of the
JSON text), written before the job's item, which then says `result_parts` instead of holding `result`; a
session's read joins them, and its stream deletes them with the job.

A running job its visitor cancelled carries `cancel_requested` (the front's mark). A stream that tells the
visitor at once, as Gradio does, writes a marker item `<job id>#cancelled` (the worker's finish puts the
job's item anew, so the item itself cannot keep that): later reads skip the job, and the stream that sees
it ended deletes it with its marker. A stream whose client drops it while a generator's messages are coming
writes `<job id>#sent` (attribute `chunks`: how many of them it had sent): the client holds what they built,
and the diffs that follow apply to that, so the session's next stream sends from there; the stream that
delivers the job deletes it with the job.
"""

from __future__ import annotations

import json
from typing import Any

from surge import protocol
from surge.models import Job, JobState
from surge.store.aws import n, s


def compact(value: Any) -> str:
    """JSON as stored: no spaces, and text as UTF-8, which DynamoDB counts per byte (`\\uXXXX` escapes
    took six bytes for a CJK character's three)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def stored_size(value: Any) -> int:
    """Bytes `value` takes as stored (`compact`, UTF-8)."""
    return len(compact(value).encode())


GENERATED = "g"
"""The one key of a generator's output message as kept in its job's item (`stored_chunk`)."""


def stored_chunk(body: dict[str, Any]) -> str:
    """A message a job streamed, as kept in its item: a generator's output as its data alone (`{"g": ...}`),
    since its event id and the rest are the job's. The envelope was most of a small step's bytes (a
    token appended: about 30 bytes of 140), and an item holds `INLINE_RESULT_BYTES` of them."""
    output = body.get("output")
    data = output.get("data") if isinstance(output, dict) else None
    if isinstance(data, list) and body == protocol.generating(str(body.get("event_id")), data):
        return compact({GENERATED: data})
    return compact(body)


def chunk_size(body: dict[str, Any]) -> int:
    """Bytes a streamed message takes in its job's item."""
    return len(stored_chunk(body).encode())


def chunk_of(text: str, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(text)
    if len(body) == 1 and GENERATED in body:
        return protocol.generating(job_id, body[GENERATED])
    return body


PART = "#part#"
"""Between a job id and a part's number in the sort key of a part of its result."""

CANCEL_DELIVERED = "#cancelled"
"""After a job id, the sort key of the marker a stream writes when it has told the visitor that the job,
still running, is cancelled (as Gradio answers a cancel at once): the job's own item cannot say so,
since its worker's finish puts the whole item anew."""

CHUNKS_SENT = "#sent"
"""After a job id, the sort key of the item a dropped stream writes with how many of the job's generator
messages (`chunks`) it had sent."""

INLINE_RESULT_BYTES = 300_000
"""The most a result and a generator's messages may take in the job's item; beyond it the result goes in parts."""

PART_CHARS = 70_000
"""Characters of JSON text per part: at most 280 kB in UTF-8 whatever the characters."""


def job_key(session_hash: str, job_id: str) -> dict[str, Any]:
    return {"session_hash": s(session_hash), "sk": s(job_id)}


def job_item(job: Job, ttl_s: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        **job_key(job.session_hash, job.job_id),
        "api_name": s(job.api_name),
        "group": s(job.group),
        "shard": n(job.shard),
        "state": s(job.state.value),
        "created_at": n(job.created_at),
        "attempt": n(job.attempt),
        "expires_at": n(int(job.created_at) + ttl_s),
    }
    if job.worker_id:
        item["worker_id"] = s(job.worker_id)
    if job.started_at is not None:
        item["started_at"] = n(job.started_at)
    if job.finished_at is not None:
        item["finished_at"] = n(job.finished_at)
    if job.progress is not None:
        item["progress"] = s(compact(job.progress))
    if job.progress_after is not None:
        item["progress_after"] = n(job.progress_after)
    if job.chunks:
        item["chunks"] = {"L": [s(stored_chunk(chunk)) for chunk in job.chunks]}
    if job.result is not None:
        item["result"] = s(compact(job.result))
    if job.ahead is not None:
        item["ahead"] = {"L": [n(tail) for tail in job.ahead]}
    return item


def job_items(job: Job, ttl_s: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The job's item and the parts of its result, if too large to be inline (written first: a reader
    that sees the item finds them)."""
    item = job_item(job, ttl_s)
    text = item.get("result", {}).get("S")
    streamed = sum(len(chunk["S"].encode()) for chunk in item.get("chunks", {}).get("L", []))
    if text is None or len(text.encode()) + streamed <= INLINE_RESULT_BYTES:
        return [], item
    pieces = [text[start : start + PART_CHARS] for start in range(0, len(text), PART_CHARS)]
    del item["result"]
    item["result_parts"] = n(len(pieces))
    parts = [
        {**job_key(job.session_hash, part_key(job.job_id, k)), "part": s(piece), "expires_at": item["expires_at"]}
        for k, piece in enumerate(pieces)
    ]
    return parts, item


def part_key(job_id: str, k: int) -> str:
    return f"{job_id}{PART}{k:04d}"


def is_part(item: dict[str, Any]) -> bool:
    return PART in item["sk"]["S"]


def is_marker(item: dict[str, Any]) -> bool:
    """An item a stream wrote beside a job's: what it told the visitor (a cancel, or the messages sent)."""
    return str(item["sk"]["S"]).endswith((CANCEL_DELIVERED, CHUNKS_SENT))


def marker_key(session_hash: str, job_id: str) -> dict[str, Any]:
    return job_key(session_hash, job_id + CANCEL_DELIVERED)


def marker_item(job: Job, ttl_s: int) -> dict[str, Any]:
    """The marker that a stream told the visitor this running job is cancelled (it expires with the job)."""
    return {**marker_key(job.session_hash, job.job_id), "expires_at": n(int(job.created_at) + ttl_s)}


def sent_key(session_hash: str, job_id: str) -> dict[str, Any]:
    return job_key(session_hash, job_id + CHUNKS_SENT)


def sent_item(job: Job, ttl_s: int) -> dict[str, Any]:
    """How many of this running job's generator messages a dropped stream had sent (it expires with the job)."""
    return {
        **sent_key(job.session_hash, job.job_id),
        "chunks": n(job.chunks_sent),
        "expires_at": n(int(job.created_at) + ttl_s),
    }


def told_of(items: list[dict[str, Any]]) -> tuple[set[str], dict[str, int]]:
    """From a session's marker items: the jobs told cancelled, and job id → its messages a stream sent."""
    cancelled: set[str] = set()
    sent: dict[str, int] = {}
    for item in items:
        key = str(item["sk"]["S"])
        if key.endswith(CHUNKS_SENT):
            sent[key.removesuffix(CHUNKS_SENT)] = int(item["chunks"]["N"])
        else:
            cancelled.add(key.removesuffix(CANCEL_DELIVERED))
    return cancelled, sent


def parts_of(items: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Job id → the text of its result's parts, in order, from a session's items."""
    found: dict[str, list[tuple[str, str]]] = {}
    for item in items:
        job_id, _, k = item["sk"]["S"].partition(PART)
        found.setdefault(job_id, []).append((k, item["part"]["S"]))
    return {job_id: [text for _, text in sorted(parts)] for job_id, parts in found.items()}


def job_of(
    item: dict[str, Any], parts: list[str] | None = None, cancel_delivered: bool = False, chunks_sent: int = 0
) -> Job:
    """The job of an item; a result kept in parts is joined from `parts` (None: left out, as when the
    parts were not read, or are missing); `cancel_delivered`, `chunks_sent`: its markers read beside it."""

    def number(name: str) -> float | None:
        return float(item[name]["N"]) if name in item else None

    return Job(
        job_id=item["sk"]["S"],
        session_hash=item["session_hash"]["S"],
        api_name=item["api_name"]["S"],
        group=item["group"]["S"],
        shard=int(item.get("shard", {}).get("N", 0)),
        state=JobState(item["state"]["S"]),
        created_at=float(item["created_at"]["N"]),
        attempt=int(item.get("attempt", {}).get("N", 0)),
        worker_id=item.get("worker_id", {}).get("S"),
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        first_output_at=number("first_output_at"),
        progress=json.loads(item["progress"]["S"]) if "progress" in item else None,
        progress_after=int(item["progress_after"]["N"]) if "progress_after" in item else None,
        chunks=[chunk_of(chunk["S"], item["sk"]["S"]) for chunk in item.get("chunks", {}).get("L", [])],
        result=_result(item, parts),
        result_parts=int(item["result_parts"]["N"]) if "result_parts" in item else 0,
        ahead=[int(tail["N"]) for tail in item["ahead"]["L"]] if "ahead" in item else None,
        cancel_requested="cancel_requested" in item,
        cancel_delivered=cancel_delivered,
        chunks_sent=chunks_sent,
    )


def _result(item: dict[str, Any], parts: list[str] | None) -> dict[str, Any] | None:
    if "result" in item:
        return dict(json.loads(item["result"]["S"]))
    expected = int(item["result_parts"]["N"]) if "result_parts" in item else 0
    if not expected or parts is None or len(parts) != expected:
        return None
    return dict(json.loads("".join(parts)))
