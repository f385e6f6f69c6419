"""Two exports racing for one folder, and an export killed (SIGKILL) at each rename that places its files.

After any of these the folder holds one complete export (every file export.json lists is there with its
SHA-256, OnnxDecoder decodes) or a state that OnnxDecoder refuses in one line naming what is wrong; never a
folder OnnxDecoder loads while its files do not match export.json, never a SavedModel version mixing two
exports. The kill goes through a wrapper process (``WRAPPER``) that counts the renames of
``os.replace``/``os.rename`` and the exporter's renameat2 exchange: production code has no test hook.

Every rename is covered by one unkilled wrapped export that copies the folder after each placing rename
(what a SIGKILL right then leaves: nothing is written between a rename and the next one); real SIGKILLs at the
commit and at the last rename before it show that the copies are those states, and the same command is rerun
on those states (each kill and rerun is two whole exports: a few seconds of CPU each).
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

# argv: KILL_AT LOG SNAPSHOTS CLI-ARGS...; kills itself right after the KILL_AT-th rename that places a file in
# the --out folder (source or destination outside the .export-tmp-* staging folder; renames inside it are part of
# the build, whose kill leaves only that folder). KILL_AT 0: never; every counted rename is logged as JSON, one a
# line; with SNAPSHOTS (a folder; '-' for none) the --out folder is copied to SNAPSHOTS/K after the K-th rename.
WRAPPER = r"""
import json, os, shutil, signal, sys
kill_at, log, snapshots, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
out = argv[argv.index("--out") + 1]
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
    if snapshots != "-":
        shutil.copytree(out, os.path.join(snapshots, str(count)), symlinks=True)

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


def _wrapped(kill_at: int, log: Path, argv: list[str], snapshots: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRAPPER, str(kill_at), str(log), str(snapshots or "-"), *argv],
                          check=False, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)


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


def _tree(out: Path) -> set[str]:
    """The relative paths of the files under ``out``, the staging folder's random name left out: two exports of
    one run differ in bytes (export.json's time, SavedModel ids) but a kill at one rename leaves these paths."""
    def name(p: Path) -> str:
        rel = p.relative_to(out).as_posix()
        return ".export-tmp-*" + rel[rel.index("/"):] if rel.startswith(exporter_module.TMP_PREFIX) else rel

    return {name(p) for p in out.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def baseline(vae_run, trained_vae_run, tmp_path_factory):
    """Unkilled wrapped exports: ``vae_run`` into an empty folder, then ``trained_vae_run`` over it with --force;
    per scenario the renames it placed, the folder after each of them, and the folder before the first."""
    root = tmp_path_factory.mktemp("races")
    out = root / "exp"
    scenarios = {}
    for scenario, run, force in (("empty", vae_run, False), ("existing", trained_vae_run, True)):
        before = root / f"{scenario}-before"
        if out.exists():
            shutil.copytree(out, before, symlinks=True)
        result = _wrapped(0, root / f"{scenario}.jsonl", _export_argv(run, out, force), root / scenario)
        assert result.returncode == 0, result.stderr[-3000:]
        assert _state(out) == _model_sha(run)
        scenarios[scenario] = {"renames": _renames(root / f"{scenario}.jsonl"), "snapshots": root / scenario,
                               "before": before, "run": run, "force": force}
    return scenarios


def _rerun_completes(out: Path, run: Path, force: bool, state: str) -> None:
    """The same command again, in this process: it completes (or, when the kill came after the commit, finds the
    complete export and asks for --force); no lock and no staging folder are left."""
    code = main(_export_argv(run, out, force))
    assert code == 0 or (state == _model_sha(run) and not force and code == 2), (state, code)
    assert _state(out) == _model_sha(run)
    if code == 2:  # refused before taking the lock: the killed export's stale lock is still there until the
        assert main(_export_argv(run, out, True)) == 0  # next export that writes, which takes it over
        assert _state(out) == _model_sha(run)
    assert not (out / LOCK_FILE).exists() and not list(out.glob(exporter_module.TMP_PREFIX + "*"))


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["empty", "existing"], ids=["into-an-empty-folder", "over-a-complete-export"])
def test_the_folder_after_each_rename_is_old_new_or_refused(baseline, scenario, tmp_path):
    case = baseline[scenario]
    renames, run = case["renames"], case["run"]
    assert len(renames) >= 5, renames  # the ONNX files, the version folder and export.json are placed
    old_manifests = ([json.loads((case["before"] / contract.EXPORT_JSON).read_text())]
                     if case["before"].exists() else [])
    old_sha = old_manifests[0]["source"]["model_sha256"] if old_manifests else None
    states = []
    for k in range(1, len(renames) + 1):
        out = tmp_path / f"after-{k}"
        shutil.copytree(case["snapshots"] / str(k), out, symlinks=True)
        state = _state(out)
        assert state in {"refused", old_sha, _model_sha(run)}, (k, state)
        committed = [json.loads((out / contract.EXPORT_JSON).read_text())] if (out / contract.EXPORT_JSON).is_file() \
            else []
        _version_is_whole(out, old_manifests + _staged_manifests(out) + committed)
        # what the rerun decides first, for every state: the leftovers go and the same command is accepted
        exporter_module._remove_leftovers(out)
        version = out / "savedmodel" / "vae" / "1"
        if state == _model_sha(run) and not case["force"]:
            with pytest.raises(ArtifactError, match="already exists"):
                exporter_module._check_out_dir(out, version, force=False)
        else:
            exporter_module._check_out_dir(out, version, force=case["force"])
        states.append(state)
    assert states[-1] == _model_sha(run) and "refused" in states  # the commit is the last rename


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["empty", "existing"], ids=["into-an-empty-folder", "over-a-complete-export"])
def test_a_real_kill_leaves_that_state_and_the_rerun_completes(baseline, scenario, tmp_path):
    case = baseline[scenario]
    last = len(case["renames"])
    # into an empty folder the commit (the rerun finds a complete export and its stale lock); over an export the
    # last rename before the commit (the old export.json moved out, everything new placed but not committed).
    # Every other rename's state is checked on the copies; each kill and rerun here is two whole exports.
    for k in ([last] if scenario == "empty" else [last - 1]):
        out = tmp_path / f"kill-{k}" / "exp"
        if case["before"].exists():
            shutil.copytree(case["before"], out, symlinks=True)
        killed = _wrapped(k, tmp_path / f"kill-{k}.jsonl", _export_argv(case["run"], out, case["force"]))
        assert killed.returncode == -signal.SIGKILL, (k, killed.returncode, killed.stderr[-3000:])
        assert len(_renames(tmp_path / f"kill-{k}.jsonl")) == k
        assert _tree(out) == _tree(case["snapshots"] / str(k)), k  # the copy the other test checks
        state = _state(out)
        assert state == _state(case["snapshots"] / str(k)), k
        _rerun_completes(out, case["run"], case["force"], state)
