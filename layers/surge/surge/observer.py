"""What the core reports as it works (admissions, rejections, batches); the edges choose where it goes.

The default observer does nothing; the deployed edges plug in Powertools metrics.
"""

from __future__ import annotations


class Observer:
    """Hooks called by the front service and the worker. Implementations must not raise."""

    def admitted(self, api_name: str) -> None:
        """A join was admitted."""

    def rejected(self, api_name: str, reason: str) -> None:
        """A join was refused: `reason` is `queue_full`, `wait_too_long` or `bad_request`."""

    def batch_ran(self, api_name: str, size: int, duration_s: float, queue_wait_s: float) -> None:
        """A batch finished: its size, how long it ran, and the longest wait of its jobs before it started."""

    def job_failed(self, api_name: str, reason: str) -> None:
        """A job ended with an error: `reason` is `error`, `time_limit`, `attempts`, `dead_letter` or
        `lost_message` (counted, never sent: `Worker._reconcile`)."""
