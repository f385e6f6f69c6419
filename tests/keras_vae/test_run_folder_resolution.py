"""Commands that take a run (or export) folder resolve a link such as runs/latest once, before anything else: a run
that finishes meanwhile and moves the link changes neither what they read nor where they write."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from keras_vae.cli import main
from keras_vae.errors import ArtifactError


class Stop(ArtifactError):
    """Raised by a stand-in once it has seen the folder the command passed on."""


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """runs/a and runs/b (each a stand-in run and export folder) and runs/latest -> a, as cwd-relative paths."""
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        for file in ("model.keras", "config.json", "decoder.onnx", "export.json"):
            (folder / file).write_text("{}")
    os.symlink("a", tmp_path / "runs" / "latest")
    return tmp_path / "runs"


def _move_latest(runs: Path, to: str = "b") -> None:
    """What `keras-vae train` does when another run finishes: replace the link in one rename."""
    tmp = runs / ".latest.tmp"
    os.symlink(to, tmp)
    os.replace(tmp, runs / "latest")


def test_resolve_folder_follows_links_and_keeps_relative_paths_relative(runs):
    from keras_vae.utils.files import resolve_folder

    assert resolve_folder("runs/latest") == Path("runs/a")
    assert resolve_folder(Path("runs/latest/")) == Path("runs/a")
    assert resolve_folder(runs / "latest") == (runs / "a").resolve()
    assert resolve_folder("runs/nothing") == Path("runs/nothing")  # the command reports it missing


def test_evaluate_writes_its_report_into_the_run_it_started_on(runs, monkeypatch, capsys):
    from keras_vae.evaluation import report

    seen = {}

    def evaluate_run(run_dir, **kwargs):
        seen["run_dir"] = Path(run_dir)
        _move_latest(runs)  # another run finishes while this one is evaluated
        return {}

    def write_evaluation(result, out, title):
        seen["written"], seen["title"] = Path(out).resolve(), title  # where the file lands, now
        return out, Path(out).with_suffix(".md")

    monkeypatch.setattr(report, "evaluate_run", evaluate_run)
    monkeypatch.setattr(report, "write_evaluation", write_evaluation)
    monkeypatch.setattr(report, "scalars", lambda result: {})
    assert main(["evaluate", "runs/latest"]) == 0
    assert seen["run_dir"] == Path("runs/a")
    assert seen["written"] == (runs / "a" / "evaluation.json").resolve()
    assert seen["title"] == "Evaluation of runs/a"


def _stand_in(monkeypatch, module, name, seen):
    def record(path, *args, **kwargs):
        seen.append(Path(path))
        raise Stop("stand-in reached")

    monkeypatch.setattr(module, name, record)


@pytest.mark.parametrize("argv", [
    ["sample", "runs/latest", "--out", "s.png"],
    ["export", "runs/latest", "--out", "exp"],
    ["encode", "runs/latest"],
    ["reconstruct", "runs/latest", "--out", "rec"],
    ["anomaly", "runs/latest"],
    ["complete", "runs/latest", "--out", "done"],
])
def test_run_folder_commands_read_the_resolved_run(runs, monkeypatch, argv):
    import keras_vae.applications.inputs as inputs
    import keras_vae.export as export
    import keras_vae.runs.folder as folder

    seen: list[Path] = []
    _stand_in(monkeypatch, folder, "load_run", seen)
    _stand_in(monkeypatch, export, "export_run", seen)
    _stand_in(monkeypatch, inputs, "open_run_and_source", seen)
    assert main(argv) == 2
    assert seen == [Path("runs/a")], f"{argv[0]} read {seen}, not the resolved run folder"


@pytest.mark.parametrize("argv", [
    ["sample", "runs/latest", "--out", "s.png"],
    ["sample", "runs/latest/decoder.onnx", "--out", "s.png"],
    ["serve-demo", "runs/latest", "--no-browser"],
])
def test_export_folder_commands_read_the_resolved_export(runs, monkeypatch, argv):
    import keras_vae.serving.onnx_decoder as onnx_decoder

    for file in ("model.keras", "config.json"):
        (runs / "a" / file).unlink()  # an export folder, not a run
    seen: list[Path] = []
    _stand_in(monkeypatch, onnx_decoder, "OnnxDecoder", seen)
    assert main(argv) == 2
    assert [p if p.name != "decoder.onnx" else p.parent for p in seen] == [Path("runs/a")]


def test_tfserving_reads_the_resolved_export(runs, monkeypatch):
    import keras_vae.serving.tfserving.kit as kit

    seen: list[Path] = []
    _stand_in(monkeypatch, kit, "write_kit", seen)
    assert main(["tfserving", "runs/latest", "--name", "vae"]) == 2
    assert seen == [Path("runs/a")]
