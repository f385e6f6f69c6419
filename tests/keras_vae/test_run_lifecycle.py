"""Run folders are never lost: --force replaces only after success, foreign folders are refused,
checkpoints are atomic and verified, divergence keeps the last good epoch, runs are locked."""
import hashlib
import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_vae.runs import lifecycle as lifecycle
from keras_vae.runs.checkpoint import STATE_FILE
from keras_vae.cli import main
from keras_vae.config import merge
from keras_vae.errors import ArtifactError, ConfigError
from keras_vae.config.presets import get_preset
from keras_vae.runs.folder import load_model
from keras_vae.training.loop import TrainingDiverged, train
from tests.support.runs import copy_run

TWO_EPOCHS = merge(get_preset("tiny-vae"), {"train": {"epochs": 2, "steps_per_epoch": 3}})
BACKUP = lifecycle.BACKUP_DIR


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def status(run):
    return json.loads((run / lifecycle.STATUS_FILE).read_text())["status"]


class Interrupt(keras.callbacks.Callback):
    """Raises at the start of epoch ``at`` (0-based): the checkpoint of the epochs before it exists."""

    def __init__(self, at=1):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("simulated crash")


def interrupted_run(path, config=TWO_EPOCHS):
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, path, verbose=0, callbacks=[Interrupt()])
    assert (path / BACKUP / STATE_FILE).is_file() and status(path) == "training"
    return path


@pytest.fixture(scope="module")
def finished(trained_vae_run, tmp_path_factory):
    """A finished tiny-vae run: the session's, copied (a failed --force must leave this copy intact)."""
    return copy_run(trained_vae_run, tmp_path_factory.mktemp("runs") / "r")


def test_force_replaces_a_run_only_after_the_new_one_finished(finished, capsys):
    before = {name: sha(finished / name) for name in ("model.keras", "metrics.json", "config.json")}
    code = main(["train", "--preset", "tiny-vae", "--out", str(finished), "--force", "--data", "folder:/nope"])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert {name: sha(finished / name) for name in before} == before  # the old run is intact
    assert status(finished) == "finished" and not (finished / lifecycle.REPLACEMENT_DIR).exists()
    assert any((finished / "logs").rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_force_replacement_and_its_interruption(tmp_path, finished):
    import shutil

    run = tmp_path / "r"
    shutil.copytree(finished, run)
    (run / "evaluation.json").write_text("{}")  # an output of the old model: stale after replacement
    old_model = sha(run / "model.keras")
    config = merge(get_preset("tiny-vae"), {"train": {"seed": 5}})
    result = train(config, run, verbose=0, force=True)
    assert result.out_dir == run and status(run) == "finished"
    assert sha(run / "model.keras") != old_model and not (run / "evaluation.json").exists()
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 5
    assert not (run / lifecycle.REPLACEMENT_DIR).exists() and not (run / lifecycle.LOCK_FILE).exists()
    # a replacement interrupted half-way (status 'replacing') is completed by the next call
    replacement = run / lifecycle.REPLACEMENT_DIR
    shutil.copytree(finished, replacement, ignore=shutil.ignore_patterns(lifecycle.LOCK_FILE))
    lifecycle.write_status(run, "replacing", outputs=["model.keras", "config.json"], new_status={"status": "finished"})
    os.replace(replacement / "model.keras", run / "model.keras")  # moved before the interruption
    with pytest.raises(ArtifactError, match="already holds a finished run"):
        train(config, run, verbose=0)
    assert sha(run / "model.keras") == sha(finished / "model.keras") and status(run) == "finished"
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 3  # the replacement's (--seed 3), not 5
    assert not (run / "metrics.json").exists() and not replacement.exists()


@pytest.mark.parametrize("foreign", ["backup", "logs", "notes.txt"])
def test_a_folder_with_foreign_content_is_refused_and_left_alone(tmp_path, foreign):
    (tmp_path / foreign).mkdir() if "." not in foreign else (tmp_path / foreign).write_text("mine")
    keep = tmp_path / foreign / "keep.txt" if "." not in foreign else tmp_path / foreign
    keep.write_text("mine")
    with pytest.raises(ArtifactError, match=f"did not write \\('{foreign}'\\).*new or empty --out"):
        train(get_preset("tiny-vae"), tmp_path, verbose=0)
    assert keep.read_text() == "mine" and sorted(os.listdir(tmp_path)) == [foreign]


def test_a_failed_train_leaves_no_run_folder(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    code = main(["train", "--preset", "tiny-vae", "--out", str(out), "--data", f"folder:{tmp_path}/missing"])
    assert code == 2 and not out.exists()
    (tmp_path / "empty").mkdir()  # a folder the user made stays, empty
    assert main(["train", "--preset", "tiny-vae", "--out", str(tmp_path / "empty"), "--data", "folder:/nope"]) == 2
    assert os.listdir(tmp_path / "empty") == []


@pytest.mark.slow
def test_corrupt_checkpoint_is_one_line_and_restart_recovers(tmp_path, capsys):
    run = interrupted_run(tmp_path / "r")
    # first, on the intact checkpoint: resuming with another configuration names the fields and changes nothing
    config_json = (run / "config.json").read_text()
    changed = merge(TWO_EPOCHS, {"train": {"epochs": 3, "learning_rate": 0.01}})
    with pytest.raises(ConfigError, match=r"train\.epochs: 2 -> 3; train\.learning_rate: 0\.001 -> 0\.01.*--restart"):
        train(changed, run, verbose=0)
    assert (run / "config.json").read_text() == config_json and (run / BACKUP / STATE_FILE).is_file()
    state = json.loads((run / BACKUP / STATE_FILE).read_text())
    weights = run / BACKUP / state["weights"]
    assert state["epoch"] == 1 and state["sha256"] == sha(weights)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # what a kill -9 used to leave
    argv = ["train", "--preset", "tiny-vae", "--epochs", "2", "--steps-per-epoch", "3", "--out", str(run)]
    for extra in ([], ["--force"]):
        assert main(argv + extra) == 2
        err = capsys.readouterr().err
        assert "checkpoint" in err and "corrupt" in err and "--restart" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(argv + ["--restart", "--quiet"]) == 0
    assert status(run) == "finished" and not (run / BACKUP).exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and metrics["resumed"] is False


@pytest.mark.slow
def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash while the weights file is written leaves the previous checkpoint usable; the run then resumes
    where it stopped: every epoch recorded once, the step counter of three epochs, no backup left."""
    run = interrupted_run(tmp_path / "r", merge(TWO_EPOCHS, {"train": {"epochs": 3}}))
    assert not (run / "model.keras").exists()
    good = json.loads((run / BACKUP / STATE_FILE).read_text())

    def half_written(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n")
        raise KeyboardInterrupt("kill during the write")

    monkeypatch.setattr(keras.Model, "save_weights", half_written)
    with pytest.raises(KeyboardInterrupt):
        train(merge(TWO_EPOCHS, {"train": {"epochs": 3}}), run, verbose=0)
    monkeypatch.undo()
    assert json.loads((run / BACKUP / STATE_FILE).read_text()) == good
    assert [p.name for p in (run / BACKUP).iterdir() if p.name != STATE_FILE] == [good["weights"]]
    result = train(merge(TWO_EPOCHS, {"train": {"epochs": 3}}), run, verbose=0)
    assert result.metrics["resumed"] is True and int(result.model.optimizer.iterations) == 9  # 3 x 3, not 4 epochs
    assert [e["epoch"] for e in result.metrics["epochs"]] == [1, 2, 3]
    assert not (run / BACKUP).exists()


class PoisonDecoder(keras.callbacks.Callback):
    """After batch ``batch`` of epoch ``epoch`` (0-based), set the decoder's weights to NaN."""

    def __init__(self, epoch=1, batch=1):
        super().__init__()
        self.epoch, self.batch, self.current, self.good = epoch, batch, 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch - 1:
            self.good = [np.array(v) for v in self.model.trainable_variables]

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            for v in self.model.decoder.trainable_variables:
                v.assign(np.full(v.shape, np.nan, np.float32))


@pytest.mark.slow
def test_divergence_keeps_the_last_good_epoch_as_the_model(tmp_path):
    poison = PoisonDecoder(epoch=1, batch=1)
    with pytest.raises(TrainingDiverged, match=r"loss term '(reconstruction|kl)' became nan at step 3 of "
                                               r"epoch 2; the last good checkpoint \(after epoch 1\)") as info:
        train(TWO_EPOCHS, tmp_path, verbose=0, callbacks=[poison])
    assert str(tmp_path / "model.keras") in str(info.value)
    model = load_model(tmp_path / "model.keras")
    for saved, good in zip(model.trainable_variables, poison.good):
        np.testing.assert_array_equal(np.array(saved), good)  # the weights after epoch 1, exactly
    text = (tmp_path / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert "NaN" not in text and metrics["status"] == "diverged" and metrics["kept_epoch"] == 1
    assert metrics["divergence"]["epoch"] == 2 and metrics["divergence"]["step"] == 3
    assert metrics["epochs"][1]["train"]["loss"] is None and metrics["epochs"][0]["train"]["loss"] > 0
    assert status(tmp_path) == "diverged" and not (tmp_path / BACKUP).exists()
    with pytest.raises(ArtifactError, match="already holds a diverged run.*--force"):
        train(TWO_EPOCHS, tmp_path, verbose=0)


@pytest.mark.slow
def test_a_run_killed_before_its_last_files_is_not_finished(tmp_path, monkeypatch):
    import keras_vae.training.loop as training

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed after model.keras")

    monkeypatch.setattr(training, "_write_figures", killed)
    with pytest.raises(KeyboardInterrupt):
        train(TWO_EPOCHS, tmp_path, verbose=0)
    monkeypatch.undo()
    assert (tmp_path / "model.keras").is_file() and status(tmp_path) == "training"
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "training"
    result = train(TWO_EPOCHS, tmp_path, verbose=0)  # not refused: it completes the run
    assert result.metrics["resumed"] is True and int(result.model.optimizer.iterations) == 6
    assert status(tmp_path) == "finished" and (tmp_path / "traversals.png").is_file()
    assert [e["epoch"] for e in result.metrics["epochs"]] == [1, 2]


def test_two_trainings_cannot_share_an_out_folder(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / lifecycle.LOCK_FILE).write_text(f"{sleeper.pid}\n")
        with pytest.raises(ArtifactError, match=f"in use by another training \\(pid {sleeper.pid}"):
            train(get_preset("tiny-vae"), tmp_path, verbose=0)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not lifecycle.pid_alive(sleeper.pid)
    with lifecycle.claim(tmp_path):  # the lock of a process that is gone is stale: taken over
        assert (tmp_path / lifecycle.LOCK_FILE).read_text().split() == [str(os.getpid()), socket.gethostname()]
    assert not (tmp_path / lifecycle.LOCK_FILE).exists()


def test_config_differences_lists_dotted_fields():
    old = {"model": {"latent_dim": 4, "hidden_units": [32]}, "train": {"epochs": 2}}
    new = {"model": {"latent_dim": 8, "hidden_units": (32,)}, "train": {"epochs": 2, "seed": 1}}
    assert lifecycle.config_differences(old, new) == ["model.latent_dim: 4 -> 8", "train.seed: None -> 1"]
