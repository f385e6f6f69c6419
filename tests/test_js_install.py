"""``keras-vae js install`` / ``js path`` with stand-in ``node`` and ``npm`` scripts (no network, ~1 s): layout,
manifest, up-to-date check, atomic replacement, and the errors for missing tools, old Node and a failing npm.
The real npm install runs in tests/test_wheel.py."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from keras_vae.cli import main
from keras_vae.serving import assets


def _script(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """A PATH with only a stand-in node (v20) and npm (records its arguments, makes node_modules)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mkdir").symlink_to(shutil.which("mkdir"))  # the only real tool on this PATH
    _script(bin_dir, "node", 'echo "${FAKE_NODE_VERSION:-v20.1.0}"\n')
    _script(bin_dir, "npm", 'if [ -n "$FAKE_NPM_FAIL" ]; then echo "npm error code E404" >&2; exit 1; fi\n'
                            'mkdir -p node_modules\n'
                            'echo "$* ONNXRUNTIME_NODE_INSTALL=$ONNXRUNTIME_NODE_INSTALL" > node_modules/npm-args.txt\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv(assets.JS_DIR_ENV, str(tmp_path / "home"))
    return bin_dir


def test_install_copies_the_node_decoder_and_runs_npm_ci(tools, tmp_path, capsys):
    assert main(["js", "path"]) == 1  # nothing installed yet
    assert capsys.readouterr().out.strip() == str(tmp_path / "home")
    assert main(["js", "install"]) == 0
    out = capsys.readouterr().out
    home = tmp_path / "home"
    assert f"node {home / 'node' / 'decode.js'} --model" in out and "keras-vae serve-demo EXPORT_DIR" in out
    for name in ("decode.js", "decoder.js", "noise.js", "attributes.js", "package.json", "package-lock.json"):
        assert (home / "node" / name).read_bytes() == (assets.asset_dir("node") / name).read_bytes()
    assert sorted(p.name for p in (home / "web").iterdir()) == ["node_modules", "package-lock.json", "package.json"]
    assert (home / "node" / "node_modules" / "npm-args.txt").read_text().split() == [
        "ci", "--no-audit", "--no-fund", "ONNXRUNTIME_NODE_INSTALL=skip"]
    assert "--omit=dev" in (home / "web" / "node_modules" / "npm-args.txt").read_text()
    manifest = json.loads((home / "keras-vae-js.json").read_text())
    assert manifest["keras_vae"] == assets.package_version() and "node/decode.js" in manifest["files"]
    assert oct(home.stat().st_mode & 0o777) != oct(0o700)  # not mkdtemp's private mode
    assert main(["js", "path"]) == 0

    (home / "node" / "node_modules" / "npm-args.txt").unlink()
    assert main(["js", "install"]) == 0 and "already installed" in capsys.readouterr().out
    assert not (home / "node" / "node_modules" / "npm-args.txt").exists()  # npm did not run
    assert main(["js", "install", "--force"]) == 0
    assert (home / "node" / "node_modules" / "npm-args.txt").is_file()
    assert sorted(os.listdir(tmp_path)) == ["bin", "home"]  # no temporary or old folders left


def test_install_elsewhere_says_how_serve_demo_finds_it(tools, tmp_path, capsys):
    assert main(["js", "install", "--dir", str(tmp_path / "other")]) == 0
    assert f"KERAS_VAE_JS_DIR={tmp_path / 'other'} keras-vae serve-demo" in capsys.readouterr().out


def test_a_failing_npm_leaves_the_previous_install(tools, tmp_path, capsys, monkeypatch):
    assert main(["js", "install"]) == 0
    before = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "home").rglob("*"))
    monkeypatch.setenv("FAKE_NPM_FAIL", "1")
    assert main(["js", "install", "--force"]) == 2
    err = capsys.readouterr().err
    assert "`npm ci --no-audit --no-fund` failed in node/: npm error code E404" in err
    assert "rerun `keras-vae js install`" in err and len(err.strip().splitlines()) == 1
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "home").rglob("*")) == before
    assert sorted(os.listdir(tmp_path)) == ["bin", "home"]


@pytest.mark.parametrize("remove, message", [("node", "node not found on PATH"), ("npm", "npm not found on PATH")])
def test_missing_tools_are_named(tools, capsys, remove, message):
    (tools / remove).unlink()
    assert main(["js", "install"]) == 2
    err = capsys.readouterr().err
    assert message in err and "install Node.js >= 18 with npm" in err


def test_old_node_is_refused(tools, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_NODE_VERSION", "v16.20.0")
    assert main(["js", "install"]) == 2
    assert "Node.js v16.20.0 is too old" in capsys.readouterr().err


def test_a_folder_that_is_not_an_install_is_not_replaced(tools, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["js", "install", "--dir", str(mine), "--force"]) == 2
    assert "is not a keras-vae js install" in capsys.readouterr().err
    assert os.listdir(mine) == ["notes.txt"]


def test_js_home_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(assets.JS_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert assets.js_home() == tmp_path / "cache" / "keras-vae" / "js" / assets.package_version()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert assets.js_home() == tmp_path / ".cache" / "keras-vae" / "js" / assets.package_version()
    monkeypatch.setenv(assets.JS_DIR_ENV, str(tmp_path / "elsewhere"))
    assert assets.js_home() == tmp_path / "elsewhere"
    assert assets.ort_web_candidates()[0] == tmp_path / "elsewhere" / "web" / "node_modules" / "onnxruntime-web" / "dist"
