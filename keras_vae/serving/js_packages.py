"""The npm packages of the JavaScript tools, installed into a user-writable js home (``keras-vae js install``).

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

import hashlib
import json
import os
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


def installed(folder: Path) -> bool:
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
        if not force and installed(target) and _read_manifest(target) == manifest:
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
        if installed(target) and _read_manifest(target) == manifest:
            return  # another `js install` of the same files finished first
        if old is not None and not target.exists():
            os.rename(old / "install", target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
