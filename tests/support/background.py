"""Independent subprocesses run ahead of their tests, on a core the test processes leave idle.

A test process is mostly one busy thread (tracing, NumPy, pytest itself). A test module that runs whole
flows in other processes (notebooks, a strategy in its own interpreter, a CLI run) declares them in a
module-level ``background_jobs(items, tmp_path_factory)`` returning ``{key: Job}`` for its selected
``items``; the session fixture ``background`` (tests/conftest.py) starts them, one at a time, as soon as
the session begins, and a test asks ``background.result(key)`` for its job's exit status and output
(waiting if the job is still running, starting it at once if nobody has started it). Nothing about a
job's result depends on when or where it ran.

With pytest-xdist every worker plans the same jobs (each collects every test) in one folder they share
(``Shared``): a job runs once, in the worker that claims it first (an atomic ``mkdir``, taken right
before the start), and its exit status is written beside its output, where the other workers read it.
"""
from __future__ import annotations

import json
import os
import re
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


class Shared:
    """Folders every test process of the session sees at the same paths: the ``tmp_path_factory`` that
    ``background_jobs`` receives. ``mktemp(name)`` is ``root/<scope>/<name>`` (no numbering), so each worker
    computes the same job folders; names must be unique within a scope (a test module)."""

    def __init__(self, root: Path, scope: str = "session"):
        self.root, self.scope = Path(root), scope

    def for_scope(self, scope: str) -> "Shared":
        return Shared(self.root, scope)

    def mktemp(self, name: str, numbered: bool = False) -> Path:
        path = self.root / _safe(self.scope) / _safe(name)
        path.mkdir(parents=True, exist_ok=True)
        return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "job"


class Background:
    """Runs submitted jobs in order, ``workers`` at a time, from a daemon thread. ``claims`` (a folder shared
    by the session's test processes) holds one claim folder and, when done, one ``result.json`` per job."""

    def __init__(self, claims: Path, workers: int = 1, drain_on_close: bool = False):
        self.claims = Path(claims)
        self.claims.mkdir(parents=True, exist_ok=True)
        self.workers = workers
        self.drain_on_close = drain_on_close
        self.jobs: dict[str, Job] = {}
        self.queue: list[str] = []
        self.mine: set[str] = set()  # the jobs this process claimed (and so started)
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

    def _claim_dir(self, key: str) -> Path:
        return self.claims / _safe(key)

    def _claim_and_start(self, key: str) -> bool:
        """Under the lock: start ``key`` here if no process of the session has; False if another one has."""
        self.queue.remove(key)
        try:
            self._claim_dir(key).mkdir()
        except FileExistsError:
            return False
        self.mine.add(key)
        self.jobs[key].start()
        return True

    def _record(self, key: str) -> None:
        """Write the exit status of this process's finished job ``key`` for the others (atomically)."""
        path = self._claim_dir(key) / "result.json"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"returncode": self.jobs[key].proc.returncode}))
            os.replace(tmp, path)

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                for key in self.mine:
                    if not self.jobs[key].running():
                        self._record(key)
                busy = sum(self.jobs[key].running() for key in self.mine)
                while self.queue and busy < self.workers:
                    busy += self._claim_and_start(self.queue[0])
            time.sleep(0.1)

    def result(self, key: str) -> Result:
        """The job's exit status and output; starts it now if no process has started it yet."""
        with self.lock:
            job = self.jobs[key]
            if key in self.queue:
                self._claim_and_start(key)
            mine = key in self.mine
        if mine:
            try:
                job.proc.wait(timeout=max(1.0, job.timeout - (time.monotonic() - job.started_at)))
            except subprocess.TimeoutExpired:
                job.kill()
                raise AssertionError(f"background job {key!r} ran over {job.timeout:.0f} s: {job.argv}") from None
            returncode = job.proc.returncode
            with self.lock:
                self._record(key)
        else:  # another test process runs it: wait for its result.json (the claim's time is the start)
            path = self._claim_dir(key) / "result.json"
            deadline = self._claim_dir(key).stat().st_mtime + job.timeout + 60
            while not path.exists():
                if time.time() > deadline:
                    raise AssertionError(f"background job {key!r}, run by another test process, gave no result "
                                         f"in {job.timeout:.0f} s: {job.argv}")
                time.sleep(0.2)
            returncode = json.loads(path.read_text())["returncode"]
        log_dir = Path(job.log_dir)
        return Result(returncode, (log_dir / "stdout.txt").read_text(), (log_dir / "stderr.txt").read_text())

    def close(self) -> None:
        """Stop starting jobs; with ``drain_on_close`` (other test processes may still need them) wait for this
        process's running jobs and record them, otherwise kill them."""
        self.stop.set()
        self.thread.join()
        for key in sorted(self.mine):
            job = self.jobs[key]
            if self.drain_on_close and job.running():
                try:
                    job.proc.wait(timeout=max(1.0, job.timeout - (time.monotonic() - job.started_at)))
                except subprocess.TimeoutExpired:
                    pass
            job.kill()
            if job.proc.returncode is not None:
                self._record(key)
