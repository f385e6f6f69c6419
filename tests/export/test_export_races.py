"""Two exports racing for one folder, and an export killed (SIGKILL) at each rename that places its files.

After any of these the folder holds one complete export (every file export.json lists is there with its
SHA-256, OnnxDecoder decodes) or a state that OnnxDecoder refuses in one line naming what is wrong; never a
folder OnnxDecoder loads while its files do not match export.json, never a SavedModel version mixing two
exports. The kill goes through a wrapper process (``WRAPPER``) that counts the renames of
``os.replace``/``os.rename`` and the exporter's renameat2 exchange: production code has no test hook.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_vae.cli import main
from keras_vae.errors import ArtifactError
from keras_vae.export import contract
from keras_vae.export import exporter as exporter_module
from keras_vae.export.locking import LOCK_FILE
from keras_vae.utils.files import file_sha256

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 900  # a safety limit for one export process on a loaded machine, not a speed check

# argv: KILL_AT LOG CLI-ARGS...; kills itself right after the KILL_AT-th rename that places a file in EXPORT_DIR
# (source or destination outside the .export-tmp-* staging folder; renames inside it are part of the build, whose
# kill leaves only that folder). KILL_AT 0: never; every counted rename is logged as JSON, one a line.
WRAPPER = r"""
import json, os, signal, sys
kill_at, log, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
from keras_vae.export import exporter
count = 0

def staged(path):
    return any(part.startswith(exporter.TMP_PREFIX) for part in os.fspath(path).split(os.sep))

def renamed(kind, src, dst):
    global count
    if staged(src) and staged(dst):
        return
    count += 1
    with open(log, "a") as f:
        f.write(json.dumps([count, kind, os.fspath(src), os.fspath(dst)]) + "\n")
    if count == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

def counting(real, kind):
    def rename(src, dst, *args, **kwargs):
        result = real(src, dst, *args, **kwargs)
        renamed(kind, src, dst)
        return result
    return rename

os.replace, os.rename = counting(os.replace, "replace"), counting(os.rename, "rename")
exchange = exporter._exchange
def counted_exchange(a, b):
    done = exchange(a, b)
    if done:
        renamed("exchange", a, b)
    return done
exporter._exchange = counted_exchange
from keras_vae.cli import main
sys.exit(main(argv))
"""


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _wrapped(kill_at: int, log: Path, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRAPPER, str(kill_at), str(log), *argv], check=False, cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)


def _renames(log: Path) -> list[list]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _export_argv(run: Path, out: Path, force: bool) -> list[str]:
    return ["export", str(run), "--out", str(out), *(["--force"] if force else [])]


def _mismatches(out: Path) -> list[str]:
    """What in ``out`` disagrees with its export.json: listed files missing or different, and files of the
    export's places (top level, the version folder) that it does not list."""
    manifest = json.loads((out / contract.EXPORT_JSON).read_text())
    files = manifest["files"]
    problems = []
    for name, entry in files.items():
        path = out / name
        if not path.is_file():
            problems.append(f"{name} missing")
        elif path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            problems.append(f"{name} differs")
    version = out / manifest["savedmodel"]["path"]
    present = [p for p in out.iterdir() if p.is_file() and not p.name.startswith(".")] + \
              [p for p in version.rglob("*") if p.is_file()]
    listed = set(files) | {contract.EXPORT_JSON}
    problems += [f"{p.relative_to(out)} not listed" for p in present if str(p.relative_to(out)) not in listed]
    return problems


def _state(out: Path) -> str:
    """The model_sha256 of the complete export in ``out``, or 'refused' when OnnxDecoder refuses it with
    one line; fails on a folder OnnxDecoder loads whose files do not match export.json (a silent mix)."""
    from keras_vae.serving.onnx_decoder import OnnxDecoder

    try:
        decoder = OnnxDecoder(out)
    except ArtifactError as exc:
        message = str(exc)
        assert "\n" not in message and any(word in message for word in (
            contract.EXPORT_JSON, "does not match", "missing", "not found")), message
        return "refused"
    images = decoder.decode(np.zeros((2, decoder.latent_dim), "float32"))
    assert images.shape[0] == 2 and np.isfinite(images).all()
    problems = _mismatches(out)
    assert not problems, f"OnnxDecoder loaded {out}, whose files do not match export.json: {problems}"
    return json.loads((out / contract.EXPORT_JSON).read_text())["source"]["model_sha256"]


def _version_is_whole(out: Path, manifests: list[dict]) -> None:
    """The SavedModel version folder, if there, is entirely that of one of ``manifests`` (TF Serving reads it
    without export.json)."""
    version = out / "savedmodel" / "vae" / "1"
    if not version.is_dir():
        return
    present = {str(p.relative_to(out)): file_sha256(p) for p in version.rglob("*") if p.is_file()}
    candidates = [{k: v["sha256"] for k, v in m["files"].items() if k.startswith("savedmodel/")} for m in manifests]
    assert present in candidates, f"the version folder matches no single export: {sorted(present)}"


def _staged_manifests(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in out.glob(".export-tmp-*/export.json")]


def _model_sha(run: Path) -> str:
    return file_sha256(run / "model.keras")


# -- fast: undoing a placement cut short, on hand-made folders ------------------------------------------------


def _hand_made_cut_short(out: Path) -> None:
    """What a kill between placing the ONNX files and the commit leaves: files matching the staged export.json."""
    staging = out / ".export-tmp-abc"
    staging.mkdir(parents=True)
    (out / "decoder.onnx").write_bytes(b"new decoder")
    (out / "savedmodel" / "vae" / "1").mkdir(parents=True)
    (out / "savedmodel" / "vae" / "1" / "saved_model.pb").write_bytes(b"new graph")
    (out / "encoder.onnx").write_bytes(b"an encoder this export did not place")
    files = {name: {"sha256": file_sha256(out / name), "bytes": (out / name).stat().st_size}
             for name in ("decoder.onnx", "savedmodel/vae/1/saved_model.pb")}
    files["encoder.onnx"] = {"sha256": "0" * 64, "bytes": 3}
    files["sampler.onnx"] = {"sha256": "1" * 64, "bytes": 3}  # not placed yet
    (staging / contract.EXPORT_JSON).write_text(json.dumps({"savedmodel": {"path": "savedmodel/vae/1"},
                                                            "files": files}))


def test_a_placement_cut_short_is_undone_and_the_rerun_needs_no_force(tmp_path):
    out = tmp_path / "exp"
    _hand_made_cut_short(out)
    version = out / "savedmodel" / "vae" / "1"
    with pytest.raises(ArtifactError, match="already exists: pass a new --version, or --force"):
        exporter_module._check_out_dir(out, version, force=False)
    exporter_module._remove_leftovers(out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["encoder.onnx", "savedmodel"]
    exporter_module._check_out_dir(out, version, force=False)  # a rerun of the same command is accepted


def test_a_committed_export_is_kept_and_only_the_staging_folder_goes(tmp_path):
    out = tmp_path / "exp"
    _hand_made_cut_short(out)
    (out / contract.EXPORT_JSON).write_text("{}")  # the commit happened; the kill came before the clean-up
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if ".export-tmp-" not in str(p))
    exporter_module._remove_leftovers(out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    with pytest.raises(ArtifactError, match="already exists"):
        exporter_module._check_out_dir(out, out / "savedmodel" / "vae" / "1", force=False)


def test_onnx_decoder_refuses_a_folder_whose_decoder_does_not_match(export_copy):
    (export_copy / contract.DECODER_ONNX).write_bytes((export_copy / contract.DECODER_ONNX).read_bytes() + b"\0")
    assert _state(export_copy) == "refused"
    (export_copy / contract.EXPORT_JSON).unlink()
    assert _state(export_copy) == "refused"


# -- slow: real processes ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("same_run", [False, True], ids=["two-runs-force", "same-run"])
def test_two_exports_started_together_leave_one_complete_export(vae_run, trained_vae_run, tmp_path, same_run):
    out = tmp_path / "exp"
    runs = [vae_run, vae_run] if same_run else [vae_run, trained_vae_run]
    argvs = [[sys.executable, "-m", "keras_vae", *_export_argv(run, out, force=not same_run)] for run in runs]
    procs = [subprocess.Popen(argv, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=TIMEOUT_S)
        results.append((proc.returncode, err))
    assert any(rc == 0 for rc, _ in results), results
    for rc, err in results:
        if rc != 0:
            lines = [line for line in err.splitlines() if "error:" in line]
            assert rc == 2 and len(lines) == 1, err[-3000:]
            assert ("another export (pid" in lines[0] and "is writing to" in lines[0]) or \
                   (same_run and "already exists: pass a new --version, or --force" in lines[0]), lines[0]
    assert _state(out) in {_model_sha(run) for run in runs}
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no lock, no staging folder


@pytest.fixture(scope="module")
def baseline(vae_run, trained_vae_run, tmp_path_factory):
    """Unkilled wrapped exports: ``vae_run`` into an empty folder, then ``trained_vae_run`` over it with --force;
    the renames each placed, and a copy of the first (complete) export."""
    out = tmp_path_factory.mktemp("races") / "exp"
    logs = tmp_path_factory.mktemp("race-logs")
    first = _wrapped(0, logs / "empty.jsonl", _export_argv(vae_run, out, force=False))
    assert first.returncode == 0, first.stderr[-3000:]
    assert _state(out) == _model_sha(vae_run)
    old = tmp_path_factory.mktemp("races-old") / "exp"
    shutil.copytree(out, old)
    second = _wrapped(0, logs / "existing.jsonl", _export_argv(trained_vae_run, out, force=True))
    assert second.returncode == 0, second.stderr[-3000:]
    assert _state(out) == _model_sha(trained_vae_run)
    return {"empty": _renames(logs / "empty.jsonl"), "existing": _renames(logs / "existing.jsonl"), "old": old}


def _kill_at_each_rename(renames, run: Path, force: bool, prepare, tmp_path: Path, old_sha: str | None):
    assert len(renames) >= 5, renames  # the ONNX files, the version folder and export.json are placed
    new_sha = _model_sha(run)
    for k in range(1, len(renames) + 1):
        out = prepare(tmp_path / f"kill-{k}" / "exp")
        old_manifests = [json.loads((out / contract.EXPORT_JSON).read_text())] if old_sha else []
        killed = _wrapped(k, tmp_path / f"kill-{k}.jsonl", _export_argv(run, out, force))
        assert killed.returncode == -signal.SIGKILL, (k, killed.returncode, killed.stderr[-3000:])
        assert len(_renames(tmp_path / f"kill-{k}.jsonl")) == k
        state = _state(out)
        assert state in {"refused", old_sha, new_sha}, (k, state)
        committed = [json.loads((out / contract.EXPORT_JSON).read_text())] if (out / contract.EXPORT_JSON).is_file() \
            else []
        _version_is_whole(out, old_manifests + _staged_manifests(out) + committed)
        # the same command again, in this process: it completes (or, when the kill came after the commit,
        # finds the complete export and asks for --force)
        code = main(_export_argv(run, out, force))
        assert code == 0 or (state == new_sha and not force and code == 2), (k, state, code)
        assert _state(out) == new_sha, k
        assert not (out / LOCK_FILE).exists() and not list(out.glob(".export-tmp-*")), k


@pytest.mark.slow
def test_a_kill_at_each_rename_into_an_empty_folder(vae_run, baseline, tmp_path):
    def empty(out: Path) -> Path:
        return out

    _kill_at_each_rename(baseline["empty"], vae_run, False, empty, tmp_path, None)


@pytest.mark.slow
def test_a_kill_at_each_rename_over_a_complete_export(vae_run, trained_vae_run, baseline, tmp_path):
    def previous(out: Path) -> Path:
        shutil.copytree(baseline["old"], out)
        return out

    _kill_at_each_rename(baseline["existing"], trained_vae_run, True, previous, tmp_path, _model_sha(vae_run))
