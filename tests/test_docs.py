"""The documentation: README.md and the MkDocs site in docs/.

Every fenced ``bash``/``sh``/``python`` block of README.md and docs/**/*.md carries an HTML comment on the
line before it: ``<!-- run: GROUP -->`` (a test below executes it) or ``<!-- not-run: REASON -->``.

    python               fast: in a fresh temporary folder, the blocks of a page in order, in one namespace
    python-runs          slow: the same, with runs/default -> a trained run and exports/mnist -> its export
    quick-tour           slow: README's Quick tour as written, in an empty folder, KERAS_VAE_MAX_STEPS set
    tf-serving           slow: the kit commands on a copy of an export ...
    tf-serving-requests  ... then the curl and client blocks against the contract server (8501/8500 -> its ports)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = {"bash", "sh", "python"}
GROUPS = {"python", "python-runs", "quick-tour", "tf-serving", "tf-serving-requests"}
MARKER = re.compile(r"^<!--\s*(run|not-run):\s*(.*?)\s*-->$")
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
VENV_BIN = Path(sys.executable).parent  # keras-vae and python of this environment
QUICK_TOUR_MAX_STEPS = "2"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    kind: str | None  # "run", "not-run" or None (no marker)
    value: str  # the group (run) or the reason (not-run)

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} ({self.lang})"


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file with the marker on the line before its fence (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence, lang, start = match.group(1), match.group(2).lower(), i
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)), len(lines))
        previous = lines[start - 1].strip() if start else ""
        marker = MARKER.match(previous)
        blocks.append(Block(path, start + 1, lang, "\n".join(lines[start + 1:end]) + "\n",
                            marker.group(1) if marker else None, marker.group(2) if marker else ""))
        i = end + 1
    return blocks


ALL_BLOCKS = [b for path in DOC_FILES for b in parse_blocks(path)]
RUNNABLE_BLOCKS = [b for b in ALL_BLOCKS if b.lang in RUNNABLE]


def group(name: str, path: Path | None = None) -> list[Block]:
    return [b for b in RUNNABLE_BLOCKS if b.kind == "run" and b.value == name and (path is None or b.path == path)]


def pages_with(name: str) -> list[Path]:
    return sorted({b.path for b in group(name)})


# --- fast: every block is accounted for ------------------------------------------------------------------

def test_every_code_block_is_run_by_a_test_or_marked_not_run_with_a_reason():
    assert len(RUNNABLE_BLOCKS) > 30  # the parser sees the blocks
    problems = []
    for block in RUNNABLE_BLOCKS:
        if block.kind is None:
            problems.append(f"{block}: no <!-- run: GROUP --> or <!-- not-run: REASON --> on the line before it")
        elif block.kind == "run" and block.value not in GROUPS:
            problems.append(f"{block}: unknown group {block.value!r}; tests/test_docs.py runs {sorted(GROUPS)}")
        elif block.kind == "not-run" and len(block.value) < 10:
            problems.append(f"{block}: say why it cannot run (got {block.value!r})")
    assert not problems, "\n".join(problems)
    for name in GROUPS:
        assert group(name), f"no block is marked run: {name}"


def test_markers_stand_right_before_a_runnable_block():
    fences = {(b.path, b.line) for b in RUNNABLE_BLOCKS}
    stray = []
    for path in DOC_FILES:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if MARKER.match(line.strip()) and (path, n + 1) not in fences:
                stray.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not stray, "markers not followed by a bash/sh/python block:\n" + "\n".join(stray)


def test_quick_tour_elsewhere_repeats_readme_word_for_word():
    readme = {b.code for b in group("quick-tour", ROOT / "README.md")}
    assert readme, "README's Quick tour is marked run: quick-tour"
    for block in group("quick-tour"):
        assert block.code in readme, f"{block} differs from README's Quick tour (the test runs README's)"


# Paths the shell blocks read must come from a command the docs show; runs/latest moves with every run.
_RUN_OR_EXPORT = re.compile(r"(?<![\w/.-])((?:runs|exports)/[\w.-]+)")
_CREATED = re.compile(r"--out\s+((?:runs|exports)/[\w.-]+)")


def test_every_run_and_export_folder_a_block_names_is_made_by_a_documented_command():
    created = {m for b in RUNNABLE_BLOCKS for m in _CREATED.findall(b.code)}
    assert {"runs/quick", "exports/quick", "runs/default", "exports/mnist"} <= created
    problems = []
    for block in RUNNABLE_BLOCKS:
        for name in _RUN_OR_EXPORT.findall(block.code):
            if name == "runs/latest":
                problems.append(f"{block}: names runs/latest, which every later run moves: use --out runs/NAME")
            elif name not in created:
                problems.append(f"{block}: {name} is made by no documented command (--out {name})")
    assert not problems, "\n".join(problems)


def test_the_training_cap_the_docs_mention_exists():
    from keras_vae.training.budget import MAX_STEPS_VARIABLE

    assert MAX_STEPS_VARIABLE == "KERAS_VAE_MAX_STEPS"
    for path in (ROOT / "README.md", ROOT / "docs" / "getting-started.md"):
        assert MAX_STEPS_VARIABLE in path.read_text(encoding="utf-8"), path


def test_every_benchmark_result_and_results_page_is_on_the_site():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for result in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        page = ROOT / "docs" / "benchmarks" / result.name
        assert page.is_file(), f"{result.relative_to(ROOT)} has no page: add docs/benchmarks/{result.name}"
        assert f'--8<-- "benchmarks/results/{result.name}"' in page.read_text(encoding="utf-8")
        assert f"benchmarks/{result.name}" in nav, f"docs/benchmarks/{result.name} is not in mkdocs.yml's nav"
    for image in ("results/default/samples.png", "results/vaegan-mnist-28/samples.png"):
        assert (ROOT / "docs" / image).is_file() and f"docs/{image}" in (ROOT / "README.md").read_text()


def test_readme_is_short_and_keeps_its_fixed_parts():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci in text, "README's set-up command is the one .ci/run runs"
    for heading in ("## Set-up", "## Quick tour", "## Layout", "## Tests"):
        assert heading in text
    assert "Old import paths" in text


# --- the site ------------------------------------------------------------------------------------------

def test_site_builds_with_strict_warnings(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    site = tmp_path / "site"
    api = (site / "api" / "models" / "index.html").read_text(encoding="utf-8")
    assert "keras_vae.models.vae.VAE" in api and "log_likelihood" in api  # mkdocstrings rendered the class
    summary = (site / "benchmarks" / "summary" / "index.html").read_text(encoding="utf-8")
    assert "Benchmark summary" in summary  # the snippet include worked from another working directory
    assert (site / "results" / "default" / "samples.png").is_file()


# --- running the blocks ---------------------------------------------------------------------------------

def _exec_python(blocks: list[Block], cwd: Path, replace: dict[str, str] | None = None) -> None:
    """Run ``blocks`` in order in one namespace with ``cwd`` as the working directory."""
    namespace: dict = {"__name__": "__docs__"}
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        for block in blocks:
            code = block.code
            for old, new in (replace or {}).items():
                code = code.replace(old, new)
            try:
                exec(compile(code, str(block), "exec"), namespace)  # noqa: S102 - the documentation's own code
            except Exception as exc:
                raise AssertionError(f"{block} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        os.chdir(previous)


def _bash(block: Block, cwd: Path, env: dict, replace: dict[str, str] | None = None,
          timeout: int = 600) -> str:
    code = block.code
    for old, new in (replace or {}).items():
        code = code.replace(old, new)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{block} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _shell_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_VAE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _json_values(text: str) -> list:
    """The JSON values of ``text`` written one after the other (curl -s adds no newline)."""
    decoder, values, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return values
        value, i = decoder.raw_decode(text, i)
        values.append(value)


def _unique_code(blocks: list[Block]) -> list[Block]:
    seen, out = set(), []
    for block in blocks:
        if block.code not in seen:  # README repeats getting-started's example: run it once
            seen.add(block.code)
            out.append(block)
    return out


PYTHON_PAGES = pages_with("python")


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[str(p.relative_to(ROOT)) for p in PYTHON_PAGES])
def test_python_blocks_run(page, tmp_path):
    earlier = [b.code for p in PYTHON_PAGES if p < page for b in group("python", p)]
    blocks = [b for b in group("python", page) if b.code not in earlier]
    if not blocks:
        pytest.skip("every block of this page is run with an earlier page")
    _exec_python(blocks, tmp_path)


@pytest.mark.slow
def test_python_blocks_run_against_a_run_and_its_export(tmp_path, trained_vae_run, vae_export):
    (tmp_path / "runs").mkdir()
    (tmp_path / "exports").mkdir()
    (tmp_path / "runs" / "default").symlink_to(trained_vae_run, target_is_directory=True)
    (tmp_path / "exports" / "mnist").symlink_to(vae_export.out, target_is_directory=True)
    blocks = _unique_code(group("python-runs"))
    assert len(blocks) >= 4
    _exec_python(blocks, tmp_path)  # the session folders are read-only: conftest fails if a block wrote there


@pytest.mark.slow
def test_readme_quick_tour_runs_as_written_in_an_empty_folder(tmp_path):
    env = _shell_env(KERAS_VAE_MAX_STEPS=QUICK_TOUR_MAX_STEPS, TF_CPP_MIN_LOG_LEVEL="2")
    for block in group("quick-tour", ROOT / "README.md"):
        _bash(block, tmp_path, env)
    run, export = tmp_path / "runs" / "quick", tmp_path / "exports" / "quick"
    for path in (run / "model.keras", run / "sampler.json", run / "samples.png", export / "decoder.onnx",
                 export / "export.json", tmp_path / "samples.png"):
        assert path.is_file(), path
    train = json.loads((run / "config.json").read_text())["train"]
    assert train["epochs"] * train["steps_per_epoch"] <= int(QUICK_TOUR_MAX_STEPS)  # the cap was applied


@pytest.mark.slow
def test_tf_serving_blocks_run_against_the_contract_server(tmp_path, vae_export):
    from keras_vae.serving.contract_server import ContractServer, GrpcContractServer, ModelRepository

    shutil.copytree(vae_export.out, tmp_path / "exports" / "mnist")  # the kit is written into the export
    env = _shell_env()
    for block in group("tf-serving"):
        _bash(block, tmp_path, env)
    assert (tmp_path / "exports" / "mnist" / "tfserving" / "models.config").is_file()
    assert (tmp_path / "kit" / "docker-compose.yml").is_file()

    name = json.loads((tmp_path / "exports" / "mnist" / "export.json").read_text())["savedmodel"]["name"]
    assert name == "vae"  # what the requests on the page ask for
    repo = ModelRepository({name: tmp_path / "exports" / "mnist" / "savedmodel" / name})
    grpc_server = GrpcContractServer(repo).start()
    try:
        with ContractServer(repo) as rest:
            rest_port = rest.url.rsplit(":", 1)[1]
            ports = {"localhost:8501": f"localhost:{rest_port}", "localhost:8500": f"localhost:{grpc_server.port}"}
            for block in group("tf-serving-requests"):
                if block.lang == "python":
                    _exec_python([block], tmp_path, replace=ports)
                    continue
                out = _bash(block, tmp_path, env, replace=ports)
                replies = _json_values(out)
                assert len(replies) == block.code.count("curl "), out[-2000:]
                assert not [r for r in replies if "error" in r], out[-2000:]
    finally:
        grpc_server.stop()
