"""Domain errors raised by the core; the edges map each kind to one HTTP status in one place."""

from __future__ import annotations


class SurgeError(Exception):
    """Base of every error the core raises on purpose."""

    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(SurgeError):
    status_code = 400


class NotFound(SurgeError):
    status_code = 404


class PayloadTooLarge(SurgeError):
    status_code = 413


class QueueFull(SurgeError):
    """Admission refused: the app already has `max_size` jobs waiting (Gradio's words)."""

    status_code = 503

    def __init__(self, max_size: int, size: int, retry_after_s: int) -> None:
        super().__init__(f"Queue is full. Max size is {max_size} and size is {size}.")
        self.size = size
        self.retry_after_s = retry_after_s


class WaitTooLong(SurgeError):
    """Admission refused up front: the expected wait is over the app's `max_wait_s`."""

    status_code = 503

    def __init__(self, eta_s: float, max_wait_s: float) -> None:
        super().__init__(
            f"The expected wait is {eta_s:.1f} s, over this app's limit of {max_wait_s:g} s: please try again later."
        )
        self.retry_after_s = max(1, int(eta_s - max_wait_s) + 1)


def start_failure_message(api_name: str, kind: str, detail: str, show_error: bool) -> str:
    """What a visitor is told of a failed worker start: the exception's type, its message only where the
    app shows errors (as Gradio shows an exception's text only with `show_error`)."""
    why = f"{kind}: {detail}" if show_error and detail != kind else kind
    return f"The workers of {api_name} could not start (loading the app raised {why}); please try again later."


class TooManyRequests(SurgeError):
    """This client joins faster than the front allows (per-client rate limit)."""

    status_code = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"Too many requests; try again in {retry_after_s} s.")
        self.retry_after_s = retry_after_s


class Unavailable(SurgeError):
    """AWS (or the local emulator) refused or failed a call; the request changed nothing."""

    status_code = 503

    def __init__(self, detail: str = "The service is busy; please try again shortly.") -> None:
        super().__init__(detail)
        self.retry_after_s = 2


class Error(Exception):
    """Raise from an app function to show `message` to the user (like `gr.Error`)."""

    def __init__(self, message: str, title: str = "Error", duration: float | None = 10, visible: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.title = title
        self.duration = duration
        self.visible = visible
        """Whether the page shows it as a toast (`gr.Error(visible=False)` only marks the outputs)."""
