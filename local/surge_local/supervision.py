"""Local child processes end with the launcher that started them, even if it was killed outright."""

from __future__ import annotations

import os
import signal
import threading
import time

PARENT_PID_VARIABLE = "SURGE_LAUNCHER_PID"


def exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """SIGTERM this process (a graceful stop) once `parent_pid` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="surge-parent-watch", daemon=True).start()
