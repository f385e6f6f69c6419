"""A full disk names the file it could not write (and the run stays resumable); a run interrupted after its epochs
(BatchNorm statistics, saving model.keras) says it is finishing the phases after training, not "epoch 3 of 2"."""
from __future__ import annotations

import errno
import io
import json
import pathlib

import pytest

from keras_vae.cli import main
from keras_vae.utils.files import atomic_path, write_json

TRAIN = ["--preset", "tiny-vae", "--set", "train.iwae_samples=2", "--set", "train.iwae_examples=8", "--quiet"]


def _full_disk_for(monkeypatch, target_name: str, after: int = 0) -> list:
    """Path.write_text raises ENOSPC (errno and message only, as write() does) for the temporary file of
    ``target_name`` after ``after`` successful writes; returns the list of attempts."""
    real = pathlib.Path.write_text
    attempts = []

    def write_text(self, *args, **kwargs):
        if self.name.startswith(f".{target_name}."):
            attempts.append(self)
            if len(attempts) > after:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    return attempts


def test_atomic_write_on_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"epochs": [1]})
    _full_disk_for(monkeypatch, "metrics.json")
    with pytest.raises(OSError) as info:
        write_json(target, {"epochs": [1, 2]})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert info.value.strerror == "No space left on device"
    assert json.loads(target.read_text()) == {"epochs": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"], "no temporary file left behind"


def test_errors_that_name_a_file_or_are_ours_pass_unchanged(tmp_path):
    from keras_vae.errors import ArtifactError

    with pytest.raises(ArtifactError, match="ours"):
        with atomic_path(tmp_path / "a.json"):
            raise ArtifactError("ours")
    with pytest.raises(FileNotFoundError) as info:
        with atomic_path(tmp_path / "b.json"):
            open(tmp_path / "missing" / "x")
    assert info.value.filename == str(tmp_path / "missing" / "x")


def test_cli_names_the_path_on_a_full_disk(tmp_path, monkeypatch, capsys):
    version = tmp_path / "exp" / "savedmodel" / "vae" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"\x08\x01")
    _full_disk_for(monkeypatch, "models.config")
    assert main(["tfserving", str(tmp_path / "exp"), "--name", "vae"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"keras-vae tfserving: error: cannot write or read "
                   f"{str(tmp_path / 'exp' / 'tfserving' / 'models.config')!r}: No space left on device; free space on "
                   f"that disk (or choose another --out) and run the command again")


def test_a_finished_plan_says_only_the_phases_after_training_are_left():
    from types import SimpleNamespace

    from keras_vae.config.presets import get_preset
    from keras_vae.utils.progress import start_summary

    config = get_preset("tiny-vae")
    data = SimpleNamespace(description="d", train=SimpleNamespace(cardinality=lambda: 5))
    model = SimpleNamespace(count_params=lambda: 10)
    epochs = config.train.epochs
    lines = start_summary(config, "run", data, model, first_epoch=epochs)
    assert f"plan: no epochs left (all {epochs} done): only the phases after training" in lines
    assert not [line for line in lines if f"of {epochs})" in line]


@pytest.mark.slow
def test_full_disk_during_training_names_metrics_json_and_the_rerun_finishes(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _full_disk_for(monkeypatch, "metrics.json", after=1)  # epoch 2's record hits the full disk
    assert main(["train", *TRAIN, "--epochs", "2", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write or read {str(run / 'metrics.json')!r}: No space left on device" in err
    assert "the interrupted run resumes from its last finished epoch" in err
    assert (run / ".keras-vae-backup" / "checkpoint.json").is_file(), "the run must stay resumable"
    monkeypatch.undo()  # space freed
    assert main(["train", *TRAIN, "--epochs", "2", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    # epoch 2 was checkpointed before its record failed: nothing is left but the phases after training
    assert f"finishing the interrupted run in {run}: all 2 epochs are done" in out
    assert "epoch 3 of 2" not in out
    assert json.loads((run / ".keras-vae-run.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_kill_during_batchnorm_statistics_then_rerun_says_it_is_finishing(tmp_path, monkeypatch):
    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset
    from keras_vae.training import loop
    from keras_vae.utils.progress import Reporter

    config = merge(get_preset("tiny-vae"), {"train": {"epochs": 1, "iwae_samples": 2, "iwae_examples": 8}})

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(loop, "finish_training", killed)
        with pytest.raises(KeyboardInterrupt):
            loop.train(config, tmp_path, verbose=0)
    stream = io.StringIO()
    loop.train(config, tmp_path, verbose=0, report=Reporter(stream=stream))
    text = stream.getvalue()
    assert text.splitlines()[0].startswith(f"finishing the interrupted run in {tmp_path}: all 1 epochs are done (")
    assert text.splitlines()[0].endswith("s spent before); running the phases after training")
    assert "plan: no epochs left (all 1 done): only the phases after training" in text
    assert "from epoch 2 of 1" not in text and "epochs 2-1" not in text
