"""Session folders built inside a test process, once per session even with several pytest-xdist workers.

``build_once(claims, key, build)`` runs ``build()`` (which fills a folder every test process sees at the
same path, e.g. ``Shared.mktemp``) in the first test process of the session that asks for ``key``: it
claims the key with an atomic ``mkdir`` under ``claims`` (the folder the background jobs' claims use is
another one), builds, and writes what ``build`` returned (plain JSON data, e.g. an export's report) to
``done.json`` in the claim, atomically. Another process that asks for the same key waits for that file
and returns the same data; if the builder failed it fails too, with the builder's traceback; if the
builder ended without a word, or nothing came within ``timeout`` seconds of the claim, it fails saying so.
Every process returns the data read back from JSON, so no test sees a difference between the process that
built and the one that waited.

Waits cannot form a cycle: ``build`` runs with its inputs already complete (the fixtures it depends on
are set up before it is called) and may not ask for another key itself (``build_once`` refuses a call made
from inside a build), so the process that builds never waits on anything, and a waiter waits only on it.
"""
from __future__ import annotations

import json
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from tests.support.background import _safe

DONE, FAILED, OWNER = "done.json", "failed.json", "owner.json"
_building = threading.local()


def build_once(claims: Path, key: str, build: Callable[[], Any], timeout: float = 900.0) -> Any:
    """``build()``'s JSON data, built in the first test process of the session that asks for ``key``."""
    if getattr(_building, "key", None) is not None:
        raise RuntimeError(f"build_once({key!r}) called while building {_building.key!r}: a build may not wait "
                           "on another one (two test processes could wait on each other)")
    claim = Path(claims) / _safe(key)
    claim.parent.mkdir(parents=True, exist_ok=True)
    try:
        claim.mkdir()
    except FileExistsError:
        return _wait(claim, key, timeout)
    _write(claim / OWNER, json.dumps({"pid": os.getpid(), "worker": os.environ.get("PYTEST_XDIST_WORKER", "")}))
    _building.key = key
    try:
        text = json.dumps(build())
    except BaseException:
        _write(claim / FAILED, json.dumps({"error": traceback.format_exc()[-6000:]}))
        raise
    finally:
        _building.key = None
    _write(claim / DONE, text)
    return json.loads(text)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _wait(claim: Path, key: str, timeout: float) -> Any:
    deadline = claim.stat().st_mtime + timeout  # the claim's time is the start of the build
    while True:
        if (claim / DONE).exists():
            return json.loads((claim / DONE).read_text())
        if (claim / FAILED).exists():
            error = json.loads((claim / FAILED).read_text())["error"]
            raise AssertionError(f"building the session fixture {key!r} failed in another test process:\n{error}")
        owner = _owner(claim)
        if owner is not None and not _alive(owner["pid"]) and not (claim / DONE).exists() \
                and not (claim / FAILED).exists():
            raise AssertionError(f"the test process that built the session fixture {key!r} "
                                 f"(pid {owner['pid']}, {owner['worker'] or 'no xdist worker'}) ended before it "
                                 f"finished")
        if time.time() > deadline:
            raise AssertionError(f"the session fixture {key!r}, built by another test process "
                                 f"({(owner or {}).get('worker') or 'unknown'}), was not ready in {timeout:.0f} s "
                                 f"(claim: {claim})")
        time.sleep(0.2)


def _owner(claim: Path) -> dict | None:
    try:
        return json.loads((claim / OWNER).read_text())
    except (FileNotFoundError, ValueError):  # not written yet (the claim is a moment old)
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
