"""A local worker process: `worker_main` (the ECS task's entry) that also ends with the launcher."""

from __future__ import annotations

import os
import runpy

from surge_local.supervision import PARENT_PID_VARIABLE, exit_with_parent

if __name__ == "__main__":
    exit_with_parent(int(os.environ[PARENT_PID_VARIABLE]))
    runpy.run_module("worker_main", run_name="__main__", alter_sys=True)
