"""Exports under interruption and concurrency: the lock, leftovers of a kill -9, the one-rename commit,
no absolute source path in what is shipped, and an int64 version bound."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from keras_vae.export import contract, export_run
from keras_vae.export import exporter as exporter_module
from keras_vae.export.locking import LOCK_FILE, folder_lock
from keras_vae.cli import main
from keras_vae.errors import ArtifactError, ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(vae_export):
    return vae_export.out, vae_export.report


def test_no_absolute_source_path_in_export_json_or_onnx_metadata(vae_run, exported):
    out, report = exported
    home = str(vae_run.resolve())
    assert report["source"]["run_dir"] == vae_run.resolve().name
    assert home not in (out / contract.EXPORT_JSON).read_text()
    for name in (contract.DECODER_ONNX, contract.ENCODER_ONNX):
        meta = {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}
        assert meta[contract.META_SOURCE_RUN] == vae_run.resolve().name
        assert not any(home in value or value.startswith("/") for value in meta.values()), meta


def test_the_export_leaves_no_lock_or_temporary_folder(exported):
    out, _ = exported
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("version", ["99999999999999999999999", str(2 ** 63)])
def test_version_beyond_int64_is_refused(vae_run, tmp_path, capsys, version):
    with pytest.raises(ConfigError, match="<= 9223372036854775807"):
        export_run(vae_run, tmp_path / "exp", version=version)
    assert main(["export", str(vae_run), "--out", str(tmp_path / "exp"), "--version", version]) == 2
    err = capsys.readouterr().err
    assert "int64" in err and err.count("\n") == 1
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("name", ["x" * 64, "a\n", "../up", "-lead"])
def test_bad_model_names(vae_run, tmp_path, name):
    with pytest.raises(ConfigError, match="is not a valid model name: use 1-63 letters"):
        export_run(vae_run, tmp_path / "exp", name=name)
    assert not (tmp_path / "exp").exists()


def test_a_live_lock_refuses_a_second_export_and_names_the_pid(vae_run, tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_FILE).write_text(f"{sleeper.pid} {os.uname().nodename}\n")
        with pytest.raises(ArtifactError, match=rf"another export \(pid {sleeper.pid} .*is writing to"):
            export_run(vae_run, out)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written, lock untouched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_two_holders_in_one_process_exclude_each_other(tmp_path):
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())
        # our own pid is alive, so a second taker is refused (it is a second writer, whoever it is)
        with pytest.raises(ArtifactError, match=rf"pid {os.getpid()}"):
            with folder_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.slow
def test_a_kill_before_the_commit_rename_leaves_no_version_and_the_rerun_needs_no_force(
        vae_run, tmp_path, monkeypatch):
    out = tmp_path / "exp"

    def killed(src, dst):
        raise KeyboardInterrupt  # stands in for a kill just before the version folder's rename

    monkeypatch.setattr(exporter_module, "_replace_dir", killed)
    with pytest.raises(KeyboardInterrupt):
        export_run(vae_run, out)
    assert not (out / "savedmodel" / "vae" / "1").exists()
    monkeypatch.undo()
    report = export_run(vae_run, out)
    assert (out / report["savedmodel"]["path"] / "saved_model.pb").is_file()
    recorded = json.loads((out / contract.EXPORT_JSON).read_text())["files"]
    assert set(recorded) >= {"decoder.onnx", "encoder.onnx", "savedmodel/vae/1/saved_model.pb"}


def test_replacing_a_folder_is_one_atomic_exchange(tmp_path):
    new, old = tmp_path / "new", tmp_path / "dst"
    new.mkdir()
    (new / "a").write_text("new")
    old.mkdir()
    (old / "a").write_text("old")
    (old / "stale").write_text("old only")
    calls = []
    real = exporter_module._exchange
    exporter_module._exchange = lambda a, b: calls.append((a, b)) or real(a, b)
    try:
        exporter_module._replace_dir(new, old)
    finally:
        exporter_module._exchange = real
    assert calls == [(new, old)]
    assert sorted(p.name for p in old.iterdir()) == ["a"] and (old / "a").read_text() == "new"
    assert not new.exists()
    if sys.platform.startswith("linux"):
        x, y = tmp_path / "x", tmp_path / "y"
        x.mkdir(), y.mkdir()
        (x / "from_x").touch()
        assert exporter_module._exchange(x, y)
        assert (y / "from_x").exists() and not (x / "from_x").exists()


@pytest.mark.slow
def test_real_kill9_during_export_then_rerun_without_force(vae_run, tmp_path):
    """A separate process is killed with SIGKILL while it builds the export: what it leaves (a lock naming a
    dead pid, a half-built .export-tmp-* folder) does not block the rerun, which needs no --force (nothing of
    a finished export was there) and leaves only the export's files."""
    out = tmp_path / "exp"
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from keras_vae.export import export_run; "
            f"export_run({str(vae_run)!r}, {str(out)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if any(p.is_dir() for p in out.glob(".export-tmp-*/savedmodel/vae/1")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the export finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert list(out.glob(".export-tmp-*")) and (out / LOCK_FILE).exists()
    (out / ".export-tmp-abc123" / "savedmodel" / "vae" / "1").mkdir(parents=True)  # and an older kill's folder
    (out / ".export-tmp-abc123" / "decoder.onnx").write_bytes(b"half written")
    report = export_run(vae_run, out)
    assert report["savedmodel"]["version"] == 1
    assert not list(out.glob(".export-tmp-*")) and not (out / LOCK_FILE).exists()
    assert sorted(p.name for p in out.iterdir()) == ["attributes.json", "decoder.onnx", "encoder.onnx", "export.json",
                                                     "sampler.json", "sampler.onnx", "savedmodel"]
