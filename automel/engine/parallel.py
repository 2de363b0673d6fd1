"""``automel search --workers N``: N local ``automel worker`` processes on one study.

Each worker is a separate process (its own Python, its own CUDA context), so a crash or a leak in one
never takes the others down; they meet only in the study's storage. With several GPUs visible each
worker gets its own device; on a CPU the cores are divided between the workers, because PyTorch's
OpenMP threads slow to a crawl when more of them than cores compete (measured in BENCHMARKS.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from automel.engine.search import OpenedSearch, SearchOptions
from automel.errors import StudyError, Terminated

STORAGE_ENV = "AUTOMEL_WORKER_STORAGE"  # the storage URL, handed to workers out of sight of `ps`
STOP_GRACE_S = 30.0  # after Ctrl-C, how long workers get to record their interrupted trials


@dataclass
class Worker:
    index: int
    device: str
    threads: int
    log: Path
    process: subprocess.Popen[bytes]


def plan_devices(device: str, workers: int, cuda_count: int) -> list[str]:
    """One device per worker: distinct GPUs when several are visible and none was named, else ``device``."""
    if device in ("auto", "cuda") and cuda_count > 1:
        return [f"cuda:{i % cuda_count}" for i in range(workers)]
    return [device] * workers


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    return max(1, (cores or os.cpu_count() or 1) // workers)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, as a container or ``taskset`` limits it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def cap_workers(workers: int, device: str, cores: int | None = None) -> tuple[int, str | None]:
    """How many worker processes to start on ``device``, and why fewer than ``workers`` (None: as asked).

    On a CPU each worker needs a core of its own: more workers than cores each get a slice of one, start
    slower (each imports PyTorch and opens the study) and finish fewer trials in the same time than fewer
    workers would; with a short time limit, none. So they are capped at the cores.
    """
    from automel.train.device import select_device

    if select_device(device).type != "cpu":
        return workers, None
    cores = cores or usable_cores()
    if workers <= cores:
        return workers, None
    return cores, (f"`workers` {workers}: this machine gives {cores} CPU core{'s' if cores > 1 else ''}; running "
                   f"{cores} worker{'s' if cores > 1 else ''}, one a core (more would share the cores and finish "
                   "fewer trials)")


def launch_workers(opened: OpenedSearch, home: Path, options: SearchOptions, workers: int,
                   data_root: Path) -> list[Worker]:
    """Start ``workers`` processes of ``automel worker`` on the opened study; their output goes to log files.

    The storage URL travels in the workers' environment (:data:`STORAGE_ENV`), not on their command lines:
    it may carry a database password, and every user of the machine can read command lines (``ps``), while
    a process's environment is readable by its owner alone.
    """
    import torch

    if workers < 1:
        raise StudyError(f"`workers` {workers}: need at least 1")
    logs = opened.handle.logs
    logs.mkdir(parents=True, exist_ok=True)
    devices = plan_devices(options.device, workers, torch.cuda.device_count())
    threads = threads_per_worker(workers) if all(not d.startswith("cuda") for d in devices) else 1
    started = []
    for index, device in enumerate(devices):
        log = logs / f"worker-{index}.log"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "AUTOMEL_HOME": str(home), STORAGE_ENV: opened.url}
        command = [sys.executable, "-m", "automel", "worker", "--study", opened.study.study_name,
                   "--data", str(data_root), "--device", device, "--home", str(home),
                   "--no-export", "--worker-index", str(index + 1), "--grace-period", str(options.grace_period)]
        if options.timeout is not None:
            command += ["--timeout", str(options.timeout)]
        with log.open("ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env)
        started.append(Worker(index, device, threads, log, process))
    return started


def wait_workers(workers: list[Worker], poll: Callable[[], None], every: float = 1.0) -> list[int]:
    """Call ``poll`` every ``every`` seconds until all workers exit; return their exit codes.

    On Ctrl-C the workers (which got the SIGINT too, from the terminal) are given time to record their
    interrupted trials, then stopped; the KeyboardInterrupt is re-raised. On SIGTERM (:class:`Terminated`),
    which a scheduler may send to this process alone, the workers get a SIGTERM the same way.
    """
    try:
        while any(w.process.poll() is None for w in workers):
            poll()
            time.sleep(every)
    except KeyboardInterrupt as exc:
        stop_workers(workers, signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        raise
    poll()
    return [int(w.process.returncode) for w in workers]


def stop_workers(workers: list[Worker], sig: int = signal.SIGINT, grace: float = STOP_GRACE_S) -> None:
    """Send ``sig`` to the running workers, wait ``grace`` seconds for them to record their trials, then kill."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(sig)
    deadline = time.monotonic() + grace
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def last_line(path: Path) -> str:
    """The last non-empty line of a worker's log: usually its error."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
