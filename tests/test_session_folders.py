"""tests.support.once: a session folder built by the first test process that asks, waited for by the others."""
import json
import os
import subprocess
import sys
import threading

import pytest

from tests.support.once import build_once


def test_the_second_asker_waits_for_the_first_build_and_gets_its_data(tmp_path):
    started, release, calls, got = threading.Event(), threading.Event(), [], {}

    def build():
        calls.append(1)
        started.set()
        release.wait(10)
        (tmp_path / "out").mkdir()
        return {"files": ["a", "b"], "pair": (1, 2)}

    first = threading.Thread(target=lambda: got.update(first=build_once(tmp_path / "claims", "run", build)))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: got.update(second=build_once(tmp_path / "claims", "run", build)))
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waiting for the first build, not building again
    release.set()
    first.join(10)
    second.join(10)
    assert calls == [1]
    assert got["first"] == got["second"] == {"files": ["a", "b"], "pair": [1, 2]}  # both read back from JSON
    assert (tmp_path / "out").is_dir()
    assert build_once(tmp_path / "claims", "run", build) == got["first"] and calls == [1]


def test_a_failed_build_fails_the_waiter_with_the_builders_traceback(tmp_path):
    def build():
        raise ValueError("no model.keras in the run folder")

    with pytest.raises(ValueError):
        build_once(tmp_path, "export", build)
    with pytest.raises(AssertionError, match="(?s)'export' failed in another test process.*no model.keras"):
        build_once(tmp_path, "export", lambda: pytest.fail("built twice"))


def test_a_build_may_not_wait_on_another(tmp_path):
    with pytest.raises(RuntimeError, match="called while building 'outer'"):
        build_once(tmp_path, "outer", lambda: build_once(tmp_path, "inner", dict))
    assert not (tmp_path / "inner").exists()


def test_a_builder_that_ended_without_a_word_or_took_too_long_fails_the_waiter(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "owner.json").write_text(json.dumps({"pid": int(gone.stdout), "worker": "gw1"}))
    with pytest.raises(AssertionError, match=r"'run' \(pid \d+, gw1\) ended before it finished"):
        build_once(tmp_path, "run", dict)
    (tmp_path / "slow").mkdir()  # claimed by a live process (this one) that never finishes
    (tmp_path / "slow" / "owner.json").write_text(json.dumps({"pid": os.getpid(), "worker": "gw0"}))
    with pytest.raises(AssertionError, match="'slow', built by another test process \\(gw0\\), was not ready in 0 s"):
        build_once(tmp_path, "slow", dict, timeout=0.0)
