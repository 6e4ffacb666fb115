"""DynamoDB adapters by concept: admission (sharded counters), jobs (the session log and its lifecycle),
fleet (leases, workers, statistics, operator records); beside them, for Gradio apps, page_state (a session's
`gr.State` values, workers only) and files (S3). Only this package, `broker` and `wake` call boto3."""

from surge.store.admission import AdmissionStore
from surge.store.aws import BOTO_CONFIG, aws_errors
from surge.store.fleet import BatchRecord, DepthSample, FleetStore
from surge.store.jobs import Claim, Completion, JobStore
from surge.store.schema import chunk_size, stored_size


class Store(AdmissionStore, JobStore, FleetStore):
    """All DynamoDB reads and writes of the system, one concept per base class. Safe to share between threads."""


__all__ = [
    "BOTO_CONFIG",
    "BatchRecord",
    "Claim",
    "Completion",
    "DepthSample",
    "Store",
    "aws_errors",
    "chunk_size",
    "stored_size",
]
