"""Independent subprocesses run ahead of their tests, on the core the test process leaves idle.

The test process is mostly one busy thread (tracing, NumPy, pytest itself); a 2-core machine then has a
core to spare. A test module that runs whole flows in other processes (notebooks, a strategy in its own
interpreter, a CLI run) declares them in a module-level ``background_jobs(items, tmp_path_factory)``
returning ``{key: Job}`` for its selected ``items``; the session fixture ``background``
(tests/conftest.py) starts them, one at a time, as soon as the session begins, and a test asks
``background.result(key)`` for its job's exit status and output (waiting if the job is still running,
starting it at once if it has not started). Nothing about a job's result depends on when it ran.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    argv: list[str]
    log_dir: Path  # stdout.txt and stderr.txt go here
    env: dict[str, str] | None = None
    cwd: str | Path | None = None
    timeout: float = 900.0
    out: Path | None = None  # what the job makes, if a folder
    proc: subprocess.Popen | None = field(default=None, init=False)
    started_at: float = field(default=0.0, init=False)

    def start(self) -> None:
        self.log_dir = Path(self.log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "stdout.txt", "w") as out, open(self.log_dir / "stderr.txt", "w") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, env=self.env, cwd=self.cwd,
                                         start_new_session=True)
        self.started_at = time.monotonic()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.running():
            try:
                os.killpg(self.proc.pid, 9)  # the job and what it started (a notebook kernel)
            except ProcessLookupError:
                pass
            self.proc.wait()


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class Background:
    """Runs submitted jobs in order, ``workers`` at a time, from a daemon thread."""

    def __init__(self, workers: int = 1):
        self.workers = workers
        self.jobs: dict[str, Job] = {}
        self.queue: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def submit(self, key: str, job: Job) -> None:
        with self.lock:
            if key in self.jobs:
                raise KeyError(f"background job {key!r} submitted twice")
            self.jobs[key] = job
            self.queue.append(key)

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                busy = sum(job.running() for job in self.jobs.values())
                while self.queue and busy < self.workers:
                    self.jobs[self.queue.pop(0)].start()
                    busy += 1
            time.sleep(0.1)

    def result(self, key: str) -> Result:
        """The job's exit status and output; starts it now if it is still queued."""
        with self.lock:
            job = self.jobs[key]
            if key in self.queue:
                self.queue.remove(key)
                job.start()
        try:
            job.proc.wait(timeout=max(1.0, job.timeout - (time.monotonic() - job.started_at)))
        except subprocess.TimeoutExpired:
            job.kill()
            raise AssertionError(f"background job {key!r} ran over {job.timeout:.0f} s: {job.argv}") from None
        return Result(job.proc.returncode, (job.log_dir / "stdout.txt").read_text(),
                      (job.log_dir / "stderr.txt").read_text())

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for job in self.jobs.values():
            job.kill()
