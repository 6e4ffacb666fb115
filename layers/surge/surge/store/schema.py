"""The item layout of the session log, documented once.

Events table (key `session_hash`, `sk`): one item per job, `sk` = the job id. Attributes: `api_name`,
`group`, `shard`, `state`, `created_at`, `attempt`, `worker_id`, `started_at` (set by the claim, so a
started job costs no extra write), `progress` (the latest progress message, JSON), `chunks` (the
generator's messages, JSON strings, appended), `result` (the `process_completed` message, JSON),
`finished_at`, `ahead` (per shard, the group's tail at the admission read before the job was counted:
jobs surely ahead of it), and `expires_at` (TTL, `job_ttl_s` after creation). Inputs are not stored: they travel
in the job's SQS message. A stream that has delivered a job's completion deletes the item.
"""

from __future__ import annotations

import json
from typing import Any

from surge.models import Job, JobState
from surge.store.aws import n, s


def compact(value: Any) -> str:
    """JSON as stored: no spaces, and text as UTF-8, which DynamoDB counts per byte (`\\uXXXX` escapes
    took six bytes for a CJK character's three)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def stored_size(value: Any) -> int:
    """Bytes `value` takes as stored (`compact`, UTF-8)."""
    return len(compact(value).encode())


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
    if job.progress is not None:
        item["progress"] = s(compact(job.progress))
    if job.progress_after is not None:
        item["progress_after"] = n(job.progress_after)
    if job.chunks:
        item["chunks"] = {"L": [s(compact(chunk)) for chunk in job.chunks]}
    if job.result is not None:
        item["result"] = s(compact(job.result))
    if job.ahead is not None:
        item["ahead"] = {"L": [n(tail) for tail in job.ahead]}
    return item


def job_of(item: dict[str, Any]) -> Job:
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
        progress=json.loads(item["progress"]["S"]) if "progress" in item else None,
        progress_after=int(item["progress_after"]["N"]) if "progress_after" in item else None,
        chunks=[json.loads(chunk["S"]) for chunk in item.get("chunks", {}).get("L", [])],
        result=json.loads(item["result"]["S"]) if "result" in item else None,
        ahead=[int(tail["N"]) for tail in item["ahead"]["L"]] if "ahead" in item else None,
    )
