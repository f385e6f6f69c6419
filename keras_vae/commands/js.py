"""``keras-vae js install [--dir DIR]`` and ``keras-vae js path``: the npm packages of the JavaScript tools.

The Node decoder (onnxruntime-node, pngjs) and the browser explorer (onnxruntime-web) need npm packages,
which cannot go inside the installed Python package (site-packages is often not writable, and a wheel
carries no node_modules). ``js install`` copies the Node decoder's sources and both lock files from the
package's assets into a user-writable folder, the js home (``keras_vae.serving.assets.js_home``:
``$KERAS_VAE_JS_DIR``, else ``~/.cache/keras-vae/js/<version>``), and runs ``npm ci`` there:

    DIR/node/   decode.js, decoder.js, noise.js, attributes.js, bench.js, package*.json, node_modules/
    DIR/web/    package*.json, node_modules/onnxruntime-web/   (what ``serve-demo`` serves)

The install is built in a temporary folder beside DIR and renamed into place, so an interrupted or
failed install leaves DIR as it was. No TensorFlow is imported.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from keras_vae.errors import ArtifactError

MANIFEST = "keras-vae-js.json"
MIN_NODE_MAJOR = 18  # serving/node/package.json "engines"
NPM_CI = ("npm", "ci", "--no-audit", "--no-fund")
# (folder, files copied from the assets, extra npm ci arguments); the web page needs no devDependencies
# (playwright-core only drives the browser in the repository's tests)
PACKAGES = (("node", ("*.js", "package.json", "package-lock.json"), ()),
            ("web", ("package.json", "package-lock.json"), ("--omit=dev",)))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``js`` (with ``install`` and ``path``) and return its parser."""
    parser = subparsers.add_parser(
        "js", help="install the npm packages of the Node decoder and the browser explorer (npm ci)",
        description="Manage the JavaScript side: the Node decoder (onnxruntime-node) and the onnxruntime-web files "
                    "that serve-demo serves. They live in the js home, a user-writable folder: $KERAS_VAE_JS_DIR "
                    "when set, else ~/.cache/keras-vae/js/<version>.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    actions = parser.add_subparsers(dest="js_command", metavar="ACTION")
    actions.required = True
    install = actions.add_parser(
        "install", help="copy the Node decoder into the js home and run npm ci there (needs node and npm)",
        description="Copy the Node decoder (decode.js ...) and the lock files of both JavaScript packages into DIR "
                    "and run `npm ci` in DIR/node and DIR/web (onnxruntime-node is installed without its CUDA "
                    "download: ONNXRUNTIME_NODE_INSTALL=skip). Built in a temporary folder beside DIR, then "
                    "renamed into place. npm reads its usual settings (registry, proxy, cache; "
                    "npm_config_offline=true installs from npm's cache alone).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    install.add_argument("--dir", metavar="DIR", default=None,
                         help="install here (default: the js home, $KERAS_VAE_JS_DIR or ~/.cache/keras-vae/js/<version>); "
                              "serve-demo finds another folder only through KERAS_VAE_JS_DIR")
    install.add_argument("--force", action="store_true", help="reinstall even when DIR already holds this version")
    actions.add_parser("path", help="print the js home folder",
                       description="Print the js home (where `js install` installs and serve-demo looks); "
                                   "exit status 1 when nothing is installed there yet.")
    return parser


def run(args) -> int:
    """Dispatch ``js install`` / ``js path``."""
    from keras_vae.serving.assets import js_home

    if args.js_command == "path":
        home = js_home()
        print(home)
        return 0 if _installed(home) else 1
    target = Path(args.dir).expanduser().absolute() if args.dir else js_home()
    fresh = install(target, force=args.force, echo=lambda line: print(line, flush=True))
    decoder = shlex.quote(str(target / "node" / "decode.js"))
    print(("installed the JavaScript packages in " if fresh else "already installed (--force reinstalls): ")
          + str(target))
    print(f"  Node decoder:  node {decoder} --model EXPORT_DIR/decoder.onnx --sample 16 --seed 0 --out-dir out/")
    print(f"                 node {decoder} --model EXPORT_DIR/decoder.onnx --latents z.json --out-dir out/")
    if target == js_home():
        print("  browser:       keras-vae serve-demo EXPORT_DIR")
    else:
        print(f"  browser:       KERAS_VAE_JS_DIR={shlex.quote(str(target))} keras-vae serve-demo EXPORT_DIR "
              "(serve-demo looks in the js home, not in --dir)")
    return 0


def _wanted_files() -> dict[str, Path]:
    """{path inside the js home: asset file} of everything copied from the package."""
    from keras_vae.serving.assets import asset_dir

    files = {}
    for folder, patterns, _ in PACKAGES:
        source = asset_dir(folder)
        for pattern in patterns:
            for path in sorted(source.glob(pattern)):
                if path.is_file():
                    files[f"{folder}/{path.name}"] = path
        for required in ("package.json", "package-lock.json"):
            if f"{folder}/{required}" not in files:
                raise ArtifactError(f"{source / required} is missing from this installation: reinstall keras-vae")
    return files


def _manifest(files: dict[str, Path]) -> dict:
    from keras_vae.serving.assets import package_version

    return {"keras_vae": package_version(),
            "files": {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}}


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _installed(folder: Path) -> bool:
    """Whether ``folder`` holds a finished install (manifest and both node_modules)."""
    return (_read_manifest(folder) is not None
            and all((folder / name / "node_modules").is_dir() for name, _, _ in PACKAGES))


def _check_tools() -> dict[str, str]:
    """{'node': path, 'npm': path}; ArtifactError naming what is missing and how to get it."""
    found = {tool: shutil.which(tool) for tool in ("node", "npm")}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        raise ArtifactError(f"{' and '.join(missing)} not found on PATH: install Node.js >= {MIN_NODE_MAJOR} with npm "
                            "(e.g. `apt-get install nodejs npm`, or https://nodejs.org), then rerun `keras-vae js install`")
    try:
        version = subprocess.run([found["node"], "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        raise ArtifactError(f"{found['node']} --version did not run: reinstall Node.js >= {MIN_NODE_MAJOR}") from None
    if major < MIN_NODE_MAJOR:
        raise ArtifactError(f"Node.js {version} is too old (the decoder needs >= {MIN_NODE_MAJOR}): upgrade Node.js, "
                            "then rerun `keras-vae js install`")
    return found


def _npm_ci(npm: str, folder: Path, extra: tuple[str, ...]) -> None:
    env = dict(os.environ, ONNXRUNTIME_NODE_INSTALL="skip")  # no CUDA download from NuGet in postinstall
    command = [npm, *NPM_CI[1:], *extra]
    try:
        proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise ArtifactError(f"could not start npm ({exc.strerror or exc}): reinstall Node.js with npm") from None
    if proc.returncode != 0:
        lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        detail = " | ".join(lines[-4:]) or f"exit status {proc.returncode}"
        raise ArtifactError(f"`{' '.join((*NPM_CI, *extra))}` failed in {folder.name}/: {detail}; check the "
                            "network or npm's registry/proxy settings (`npm config get registry`), then rerun "
                            "`keras-vae js install`")


def install(target, force: bool = False, echo=print) -> bool:
    """Install the Node decoder and the npm packages into ``target``; True when installed now, False when it
    already held this version (and ``force`` is off). ArtifactError on missing node/npm or a failed npm ci;
    ``target`` is then left as it was."""
    target = Path(target).expanduser().absolute()
    files = _wanted_files()
    manifest = _manifest(files)
    if target.exists():
        if not target.is_dir() or (any(target.iterdir()) and _read_manifest(target) is None):
            raise ArtifactError(f"{target} exists and is not a keras-vae js install: pass an empty or new folder "
                                "with --dir (or remove it)")
        if not force and _installed(target) and _read_manifest(target) == manifest:
            return False
    tools = _check_tools()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)  # mkdtemp makes it 0700
        for name, source in files.items():
            (work / name).parent.mkdir(exist_ok=True)
            shutil.copyfile(source, work / name)
        for folder, _, extra in PACKAGES:
            echo(f"npm ci in {target / folder} ...")
            _npm_ci(tools["npm"], work / folder, extra)
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _swap_in(work, target, manifest)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return True


def _swap_in(work: Path, target: Path, manifest: dict) -> None:
    """Rename the finished ``work`` folder to ``target``, moving an older install aside first."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.rename(target, old / "install")
    try:
        os.rename(work, target)
    except OSError:
        if _installed(target) and _read_manifest(target) == manifest:
            return  # another `js install` of the same files finished first
        if old is not None and not target.exists():
            os.rename(old / "install", target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
