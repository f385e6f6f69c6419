"""The peers of a multi-worker task: which TF_CONFIG addresses answer, who a forming cluster waits for,
and which task a TensorFlow error lost.

A peer is a task of TF_CONFIG's cluster other than this one. It *answers* when its ``host:port``
accepts a TCP connection: TensorFlow's gRPC server listens there from the moment the task starts
joining the cluster until the process ends, so a silent address is a task not started yet, or gone.
No TensorFlow import here.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from keras_vae.errors import KerasVAEError
from keras_vae.utils.validation import short

PROBE_TIMEOUT_S = 2.0  # per address; a live peer on a LAN answers in milliseconds
REPORT_EVERY_S = 10.0  # the forming cluster's "waiting for" line
DEFAULT_PEER_TIMEOUT_S = 300.0
PEER_TIMEOUT_ENV = "KERAS_VAE_PEER_TIMEOUT"
FOREVER = ("none", "0")  # --peer-timeout values that wait without a limit

Peer = tuple[str, str]  # ("worker:1", "host:port")
Probe = Callable[[str], bool]


class PeerTimeoutError(KerasVAEError):
    """The multi-worker cluster did not form in time: a task of TF_CONFIG never joined."""


def parse_peer_timeout(text: str | float | None) -> float | None:
    """Seconds to wait for the cluster to form, from ``--peer-timeout`` text: a number > 0, or 'none' / 0
    for no limit (None). ValueError (one line) for anything else."""
    value = str(text).strip().lower()
    if value in FOREVER or value in ("0.0", "inf"):
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"expected seconds (a number > 0) or 'none', got {short(text)}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected seconds (a number > 0) or 'none', got {short(text)}")
    return seconds or None


def peer_timeout(flag: float | None | str = "", environ: Mapping[str, str] | None = None) -> float | None:
    """The timeout in force: ``flag`` (already parsed; '' when not given), else $KERAS_VAE_PEER_TIMEOUT,
    else DEFAULT_PEER_TIMEOUT_S. None waits without a limit."""
    if flag != "":
        return flag  # type: ignore[return-value]
    environ = os.environ if environ is None else environ
    text = environ.get(PEER_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_PEER_TIMEOUT_S
    try:
        return parse_peer_timeout(text)
    except ValueError as exc:
        raise PeerTimeoutError(f"{PEER_TIMEOUT_ENV}: {exc} (e.g. {PEER_TIMEOUT_ENV}=300)") from None


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def answers(address: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when ``host:port`` accepts a TCP connection now."""
    try:
        with socket.create_connection(_split(address), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def named(peers: Iterable[Peer]) -> str:
    """'worker:1 (10.0.0.2:2222), worker:2 (10.0.0.3:2222)'."""
    return ", ".join(f"{name} ({address})" for name, address in peers)


def silent(peers: Sequence[Peer], probe: Probe = answers) -> list[Peer]:
    """The ``peers`` whose address does not accept a connection."""
    return [(name, address) for name, address in peers if not probe(address)]


def waiting_line(task: str, peers: Sequence[Peer], timeout_s: float | None, elapsed_s: float,
                 probe: Probe = answers) -> str:
    """One line: the peers this task waits for (those that do not answer yet) and the time waited."""
    missing = silent(peers, probe)
    limit = "no limit" if timeout_s is None else f"--peer-timeout {timeout_s:g} s"
    who = (f"waits for {named(missing)} to start: no answer at that address yet" if missing else
           f"waits for the cluster to form (every peer answers: {named(peers)})")
    return f"multiworker: task {task} {who}; {elapsed_s:.0f} s so far ({limit})"


def timeout_message(task: str, peers: Sequence[Peer], timeout_s: float | None, elapsed_s: float,
                    probe: Probe = answers) -> str:
    """One line: who never joined within the timeout, and what to do."""
    missing = silent(peers, probe)
    limit = f"--peer-timeout {timeout_s:g} s" if timeout_s is not None else "the wait"
    who = (f"{named(missing)} never joined (no answer at that address)" if missing
           else f"the cluster did not form, though every peer answers ({named(peers)})")
    return (f"multi-worker task {task} gave up after {elapsed_s:.0f} s ({limit}): {who}; start every task that "
            "TF_CONFIG lists (the same cluster, each its own index) within the timeout, or raise "
            f"--peer-timeout (or {PEER_TIMEOUT_ENV}; 'none' waits without a limit)")


def watch(task: str, peers: Sequence[Peer], timeout_s: float | None, *, every_s: float,
          give_up_after_s: float | None, report: Callable[[str], None], give_up: Callable[[str], None],
          alive: Callable[[], bool] = lambda: True, probe: Probe = answers,
          sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
    """Until ``alive()`` turns false: every ``every_s`` seconds ``report(waiting_line)``; once
    ``give_up_after_s`` (None: never) has passed, ``give_up(timeout_message)`` and return."""
    started = clock()
    while True:
        sleep(every_s)
        if not alive():
            return
        elapsed = clock() - started
        if give_up_after_s is not None and elapsed >= give_up_after_s:
            give_up(timeout_message(task, peers, timeout_s, elapsed, probe))
            return
        report(waiting_line(task, peers, timeout_s, elapsed, probe))


@contextlib.contextmanager
def formation_watched(task: str, peers: Sequence[Peer], timeout_s: float | None, *, every_s: float,
                      give_up_after_s: float | None, stderr: int = 2) -> Iterator[None]:
    """Inside: a watcher process (``python -m keras_vae.training.peers``) writes the waiting lines to
    ``stderr`` and, after ``give_up_after_s``, the one-line error, then kills this process. A process,
    not a thread: TensorFlow holds the GIL while the cluster forms, so no Python thread here runs."""
    spec = {"parent": os.getpid(), "task": task, "peers": [list(p) for p in peers], "timeout_s": timeout_s,
            "every_s": every_s, "give_up_after_s": give_up_after_s}
    root = str(Path(__file__).resolve().parents[2])  # the folder holding keras_vae, for the watcher's import
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "keras_vae.training.peers", json.dumps(spec)], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    except OSError:  # no watcher (e.g. no process may be started): TensorFlow's own timeout still applies
        proc = None
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def _main(argv: Sequence[str]) -> int:
    """The watcher process: ``python -m keras_vae.training.peers SPEC_JSON`` (formation_watched)."""
    spec = json.loads(argv[0])
    parent = int(spec["parent"])

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def give_up(line: str) -> None:
        report(f"keras-vae train: error: {line}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(parent, signal.SIGKILL)  # TensorFlow ignores SIGTERM while it waits

    watch(spec["task"], [tuple(p) for p in spec["peers"]], spec["timeout_s"], every_s=float(spec["every_s"]),
          give_up_after_s=spec["give_up_after_s"], report=report, give_up=give_up,
          alive=lambda: os.getppid() == parent)
    return 0


# --- which task a TensorFlow error lost ------------------------------------------------------------
_TASK = r"/job:(\w+)/replica:\d+/task:(\d+)"
_ADDRESS = re.compile(r"(?:ipv4:|ipv6:)?\[?([\w.\-]+|[0-9a-fA-F:]+)\]?:(\d{1,5})\b")


def _tasks(text: str, pattern: str = _TASK) -> list[str]:
    return [f"{job}:{task}" for job, task in re.findall(pattern, text)]


def _resolved(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return set()


def tasks_at_addresses(message: str, peers: Sequence[Peer]) -> list[str]:
    """The peers whose ``host:port`` appears in ``message`` (as written in TF_CONFIG, or the IP a host
    name resolves to: gRPC reports peers as 'ipv4:10.0.0.2:2222')."""
    found = {(host.lower(), int(port)) for host, port in _ADDRESS.findall(message) if port.isdigit()}
    if not found:
        return []
    names = []
    for name, address in peers:
        host, port = _split(address)
        if (host.lower(), port) in found:
            names.append(name)
            continue
        hosts_here = {h for h, p in found if p == port}
        if hosts_here and hosts_here & _resolved(host):
            names.append(name)
    return names


def lost_tasks(message: str, self_name: str | None = None, peers: Sequence[Peer] = (),
               probe: Probe | None = answers) -> str:
    """Which task(s) a TensorFlow error after a lost peer names, e.g. 'worker:1', in this order: the
    coordination service's 'unhealthy' task list or 'reported from' task; the remote target of a failed
    RPC; a peer whose TF_CONFIG address (or its IP) is in the message; any other task name but this one;
    else the peers whose address no longer answers (``probe``; None skips it); else 'a task'."""
    def other(names: Iterable[str]) -> list[str]:
        return sorted({n for n in names if n != self_name})

    unhealthy = message.split("unhealthy", 1)[1] if "unhealthy" in message else ""
    for names in (_tasks(unhealthy), _tasks(message, r"reported from /job:(\w+)/task:(\d+)"),
                  _tasks(message, r"remote target " + _TASK), tasks_at_addresses(message, peers),
                  _tasks(message)):
        if other(names):
            return ", ".join(other(names))
    if probe is not None and peers:
        gone = [name for name, _ in silent(peers, probe)]
        if gone:
            return ", ".join(sorted(gone))
    return "a task"


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
