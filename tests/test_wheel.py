"""The built wheel works on its own: installed into a fresh virtual environment and run from a folder outside
the repository, every command (train, sample, evaluate, export, tfserving, js install, serve-demo) and the
Node decoder work, and the wheel adds nothing but ``keras_vae`` and its dist-info to site-packages.

No network and no reinstall of the dependencies: the wheel is built with ``--no-build-isolation`` from a copy
of the source (so the shared working tree gets no build/ folder), installed with ``--no-deps --no-index``
into a venv made ``--without-pip``, and the dependencies come from this interpreter's site-packages through a
``.pth`` file. Folders named on a ``.pth`` line are added to sys.path, but *their* ``.pth`` files are not run,
so this project's editable install (a .pth finder) stays off: the wheel's copy is the one imported.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE = ("pyproject.toml", "README.md", "keras_vae", "serving")  # what pyproject builds the wheel from
ASSETS = "keras_vae/serving/_assets/"
STEP_TIMEOUT = 300  # seconds for one command (train and export take ~10 s each on 2 busy cores)


def _run(args, cwd, env, timeout=STEP_TIMEOUT):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} -> {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return Path(out.strip())


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel, install it into a fresh venv; {wheel, venv, bin, site, env, added, work}."""
    root = tmp_path_factory.mktemp("wheel")
    src, dist, venv = root / "src", root / "dist", root / "venv"
    src.mkdir()
    ignore = shutil.ignore_patterns("node_modules", "__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in SOURCE:
        (shutil.copytree(REPO / name, src / name, ignore=ignore) if (REPO / name).is_dir()
         else shutil.copy2(REPO / name, src / name))
    start = time.perf_counter()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", dist, src], cwd=root, env=os.environ.copy())
    built_s = time.perf_counter() - start
    wheel, = dist.glob("keras_vae-*.whl")

    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root, env=os.environ.copy())
    python = venv / "bin" / "python"
    site_dir = _site_packages(python)
    deps = [p for p in (*site.getsitepackages(), site.getusersitepackages() if site.ENABLE_USER_SITE else "")
            if p and Path(p).is_dir()]
    (site_dir / "_keras_vae_test_deps.pth").write_text("\n".join(deps) + "\n")
    before = set(os.listdir(site_dir))
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
         cwd=root, env=os.environ.copy())
    added = set(os.listdir(site_dir)) - before
    print(f"\nwheel {wheel.name} ({wheel.stat().st_size / 1e6:.2f} MB) built in {built_s:.1f} s")

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "KERAS_VAE_JS_DIR", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    work = root / "work"  # cwd of every command: outside the repository
    work.mkdir()
    return {"wheel": wheel, "src": src, "venv": venv, "bin": venv / "bin", "site": site_dir, "env": env, "added": added,
            "work": work}


@pytest.mark.slow
def test_the_wheel_holds_only_keras_vae_and_its_assets(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    version = tomllib.loads((installed["src"] / "pyproject.toml").read_text())["project"]["version"]
    assert {name.split("/")[0] for name in names} == {"keras_vae", f"keras_vae-{version}.dist-info"}
    for asset in ("web/index.html", "web/explorer.js", "web/package.json", "web/package-lock.json",
                  "node/decode.js", "node/decoder.js", "node/noise.js", "node/attributes.js",
                  "node/package.json", "node/package-lock.json", "tfserving/models.config"):
        assert ASSETS + asset in names, asset
    assert "keras_vae/evaluation/mnist_feature_net.weights.h5" in names
    assert not [n for n in names if "node_modules" in n or "__pycache__" in n]
    shipped = {n for n in names if n.endswith(".py")}
    in_tree = {p.relative_to(installed["src"]).as_posix() for p in (installed["src"] / "keras_vae").rglob("*.py")}
    assert in_tree <= shipped, sorted(in_tree - shipped)


@pytest.mark.slow
def test_installing_adds_only_keras_vae_and_the_repository_stays_off_the_path(installed):
    assert {a for a in installed["added"] if not a.endswith(".dist-info")} == {"keras_vae"}, installed["added"]
    assert len(installed["added"]) == 2, installed["added"]
    code = ("import json, sys, keras_vae\n"
            "from keras_vae.serving.assets import assets_root\n"
            "gone = []\n"
            "for name in ('export', 'serving'):\n"
            "    try:\n        __import__(name)\n    except ImportError:\n        gone.append(name)\n"
            "print(json.dumps({'file': keras_vae.__file__, 'gone': gone, 'assets': str(assets_root()),"
            " 'path': sys.path}))\n")
    info = json.loads(_run([installed["bin"] / "python", "-c", code], cwd=installed["work"],
                           env=installed["env"]).stdout)
    assert Path(info["file"]).is_relative_to(installed["site"]), info["file"]
    assert Path(info["assets"]).is_relative_to(installed["site"]), info["assets"]
    assert info["gone"] == ["export", "serving"]
    assert not [p for p in info["path"] if p and Path(p).resolve() == REPO], info["path"]


@pytest.fixture(scope="module")
def exported(installed):
    """train -> export with the wheel's entry point, from a folder outside the repository."""
    cli, work, env = installed["bin"] / "keras-vae", installed["work"], installed["env"]
    _run([cli, "train", "--preset", "tiny-vae", "--out", "run", "--quiet"], work, env)
    _run([cli, "export", "run", "--out", "export", "--name", "digits"], work, env)
    return work / "run", work / "export"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_train_export_sample_evaluate_tfserving_from_the_wheel(installed, exported):
    cli, work, env = installed["bin"] / "keras-vae", installed["work"], installed["env"]
    run, export = exported
    assert (export / "decoder.onnx").is_file() and (export / "savedmodel" / "digits" / "1").is_dir()
    _run([cli, "sample", export, "--n", "4", "--out", "onnx.png"], work, env)  # onnxruntime only
    _run([cli, "sample", run, "--n", "4", "--out", "tf.png"], work, env)  # TensorFlow
    assert _is_png(work / "onnx.png") and _is_png(work / "tf.png")
    _run([cli, "evaluate", run, "--samples", "100", "--no-likelihood", "--out", "eval.json"], work, env)
    assert json.loads((work / "eval.json").read_text())["sections"]["sample_quality"]["frechet_distance"]["n"] == 100
    out = _run([cli, "tfserving", export], work, env).stdout
    assert "models.config" in out and (export / "tfserving" / "docker-compose.yml").is_file()


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first stdout line of ``proc`` within ``timeout`` seconds ('' when it ended or stayed silent)."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else ""


def _get(url: str):
    with urllib.request.urlopen(url, timeout=15) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read()


@pytest.mark.slow
def test_js_install_serve_demo_and_the_node_decoder_from_the_wheel(installed, exported):
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: `keras-vae js install` needs Node.js >= 18 with npm")
    cli, work, env = installed["bin"] / "keras-vae", installed["work"], dict(installed["env"])
    _, export = exported
    home = work / "js"
    # npm prefers its cache (~/.npm, filled by serving/install_test_deps.sh's npm ci of the same lock files) and
    # asks the registry only for what the cache lacks: offline-friendly and a few seconds instead of a download.
    env["npm_config_prefer_offline"] = "true"
    out = _run([cli, "js", "install", "--dir", home], work, env, timeout=600).stdout
    decode_js = home / "node" / "decode.js"
    assert f"node {decode_js} --model" in out, out
    assert (home / "web" / "node_modules" / "onnxruntime-web" / "dist" / "ort.wasm.bundle.min.mjs").is_file()
    assert "already installed" in _run([cli, "js", "install", "--dir", home], work, env).stdout
    assert not [p for p in work.iterdir() if p.name.startswith(".js.")]  # no temporary folders left behind
    env["KERAS_VAE_JS_DIR"] = str(home)
    assert _run([cli, "js", "path"], work, env).stdout.strip() == str(home)

    log = (work / "serve-demo.stderr").open("w")
    proc = subprocess.Popen([str(cli), "serve-demo", "export", "--port", "0", "--no-browser"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = _first_line(proc, timeout=120)
        assert " at http://" in line, (f"serve-demo printed {line!r}; exit {proc.poll()}; "
                                       f"{(work / 'serve-demo.stderr').read_text()[-2000:]}")
        base = line.split(" at ")[1].split()[0]
        status, ctype, body = _get(base)
        assert status == 200 and ctype.startswith("text/html") and b"latent explorer" in body
        assert _get(base + "decoder.onnx")[2] == (export / "decoder.onnx").read_bytes()
        assert _get(base + "noise.js")[2] == (installed["site"] / ASSETS / "node" / "noise.js").read_bytes()
        dist = home / "web" / "node_modules" / "onnxruntime-web" / "dist"
        status, ctype, body = _get(base + "node_modules/onnxruntime-web/dist/ort.wasm.bundle.min.mjs")
        assert status == 200 and ctype.startswith("text/javascript")
        assert body == (dist / "ort.wasm.bundle.min.mjs").read_bytes()
        wasm = sorted(p.name for p in dist.glob("*.wasm"))[0]
        status, ctype, body = _get(base + "node_modules/onnxruntime-web/dist/" + wasm)
        assert status == 200 and ctype == "application/wasm" and body[:4] == b"\0asm"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        proc.stdout.close()
        log.close()

    latent_dim = json.loads((export / "export.json").read_text())["model"]["latent_dim"]
    (work / "z.json").write_text(json.dumps([[0.0] * latent_dim, [0.5] * latent_dim]))
    summary = json.loads(_run(["node", decode_js, "--model", export / "decoder.onnx", "--latents", "z.json",
                               "--out-dir", "pngs"], work, env, timeout=120).stdout)
    assert summary["shape"][0] == 2
    assert _is_png(work / "pngs" / "image_0000.png") and _is_png(work / "pngs" / "image_0001.png")
    _run(["node", decode_js, "--model", export / "decoder.onnx", "--sample", "3", "--seed", "0", "--out-dir",
          "sampled"], work, env, timeout=120)
    assert _is_png(work / "sampled" / "image_0002.png")


def test_package_data_ships_every_asset_and_each_glob_matches_something():
    """pyproject's package-data for the mapped serving/ folder: every file the tools read is listed (the
    slow tests above then prove the installed copy works); a glob that matches nothing is a stale entry."""
    import fnmatch

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    root = REPO / config["package-dir"]["keras_vae.serving._assets"]
    globs = config["package-data"]["keras_vae.serving._assets"]
    tracked = subprocess.run(["git", "ls-files", "serving"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    files = [str(Path(f).relative_to("serving")) for f in tracked] or \
        [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "node_modules" not in p.parts]
    not_shipped = [f for f in files if f != "install_test_deps.sh"  # the repository's test set-up, not a tool
                   and not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert not_shipped == []
    unused = [g for g in globs if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for f in files)]
    assert unused == []

