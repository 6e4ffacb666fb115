"""`make bench-profile`: where the CPU goes in the Surge stack under load (py-spy on every process).

Starts the local stack for one workload, drives it with N closed-loop users, samples the emulator,
the front and the workers with py-spy (raw collapsed stacks, GIL-holding samples only, i.e. CPU), and
prints per process the busiest functions by own time and by inclusive time, plus the share of all
samples spent in the emulator versus in Surge's processes. Raw stacks go to `bench/results/profile/`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import loadgen, targets
from bench.run import RESULTS
from bench.workloads import WORKLOADS


def _summarise(path: Path, top: int) -> list[str]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        total += count
        if frames:
            own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    lines = [f"  {total} samples"]
    lines += ["  own time:"] + [f"    {100 * n / max(1, total):5.1f} %  {f}" for f, n in own.most_common(top)]
    lines += ["  inclusive:"] + [
        f"    {100 * n / max(1, total):5.1f} %  {f}" for f, n in inclusive.most_common(top * 2)
    ]
    return lines


def _short(frame: str) -> str:
    """`fn (path/to/module.py:12)` → `fn (module.py)` so that lines of one function add up."""
    name, _, where = frame.partition(" (")
    file = where.split(":")[0].rsplit("/", 2)
    return f"{name} ({'/'.join(file[-2:])})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", default="sim_gpu", choices=sorted(WORKLOADS))
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", type=Path, default=RESULTS / "profile")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="surge-profile-"))
    args.out.mkdir(parents=True, exist_ok=True)
    for folder in ("devices", "calls"):
        (work / folder).mkdir(exist_ok=True)
    running = targets.start_surge(args.workload, args.workers, work / "devices", work / "calls")
    spies: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
    try:
        recorder = loadgen.Recorder()

        async def drive() -> None:
            async with loadgen.client_for(args.users) as client:
                target = await loadgen.discover(client, running.url, args.workload)
                begin = time.monotonic()
                task = asyncio.create_task(
                    loadgen.run(client, target, loadgen.Load(users=args.users), recorder, begin + args.seconds + 3)
                )
                await asyncio.sleep(2)
                for role, pids in running.processes.items():
                    for pid in pids:
                        path = args.out / f"{role}-{pid}.txt"
                        spies.append(
                            (
                                role,
                                path,
                                subprocess.Popen(
                                    [
                                        str(Path(shutil.which("py-spy") or "py-spy")),
                                        "record",
                                        "-p",
                                        str(pid),
                                        "-f",
                                        "raw",
                                        "-o",
                                        str(path),
                                        "-d",
                                        str(int(args.seconds)),
                                        "-r",
                                        "50",
                                        "--gil",
                                        "--nonblocking",
                                    ],
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL,
                                ),
                            )
                        )
                await asyncio.sleep(args.seconds + 1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(task, 10)
                for reader in list(recorder.readers):
                    reader.cancel()

        asyncio.run(drive())
        for _, _, spy in spies:
            spy.wait(30)
    finally:
        targets.stop(running)
    done = [s for s in recorder.samples if s.ok]
    print(
        f"{args.workload} K={args.workers} N={args.users}: {len(done)} completed, "
        f"{len(recorder.rejections)} rejected, {len(recorder.errors)} errors"
    )
    per_role: collections.Counter[str] = collections.Counter()
    for role, path, _ in spies:
        if not path.exists():
            continue
        summary = _summarise(path, args.top)
        per_role[role] += int(summary[0].split()[0])
        print(f"== {role} ({path.name})")
        print("\n".join(summary))
    total = sum(per_role.values())
    print("CPU samples by process: " + ", ".join(f"{r} {100 * n / max(1, total):.0f} %" for r, n in per_role.items()))


if __name__ == "__main__":
    main()
