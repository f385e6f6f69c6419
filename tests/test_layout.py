"""The package's shape: one namespace, no import cycles, one import direction, a wheel that lists
every package. Read from the source with ``ast`` (no imports), so it runs in milliseconds."""
from __future__ import annotations

import ast
import re
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "keras_vae"

# Lower layers never import higher ones (lazy imports inside functions included). Within a layer,
# imports are allowed but may not form a cycle. "<root>" is keras_vae/__init__.py (lazy façade).
LAYERS = (
    {"errors", "choices", "utils"},
    {"config", "data", "distributions", "losses"},
    {"sampling"},
    {"models"},
    {"runs"},
    {"evaluation"},
    {"training"},
    {"ablation", "applications"},
    {"export"},
    {"serving"},
    {"loading", "commands", "cli", "__main__", "_registration", "<root>"},
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "_assets" not in p.parts}


def import_graph() -> dict[str, set[str]]:
    """{module: modules it imports}, top-level and inside functions; imports of an ancestor package
    (which Python runs anyway before any of its submodules) are left out."""
    mods = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [module] + [f"{module}.{a.name}" for a in node.names]
            for target in targets:
                if target in mods and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if top(module) in layer:
            return i
    raise AssertionError(f"{module} belongs to no layer of tests/test_layout.py: add its folder to LAYERS")


def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_concept_folders():
    folders: dict[str, set[str]] = defaultdict(set)
    for a, targets in import_graph().items():
        folders[a] |= {b for b in targets if top(b) != top(a)}
    graph = {f"keras_vae.{top(a)}": {f"keras_vae.{top(b)}" for b in bs} for a, bs in folders.items()}
    assert cycles(graph) == []


def test_imports_only_go_down_the_layers():
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if layer_of(b) > layer_of(a))
    assert upward == []


def test_every_module_has_a_layer_and_the_graph_sees_known_edges():
    graph = import_graph()
    for name in modules():
        layer_of(name)
    # the checker itself must see lazy imports inside functions and relative/aliased forms
    assert "keras_vae.sampling.samplers" in graph["keras_vae.models.base"]  # imported inside a method
    assert "keras_vae.export.contract" in graph["keras_vae.serving.demo"]


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_wheel_lists_exactly_the_packages_of_the_tree():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    tree = {module_name(p.parent) for p in PACKAGE.rglob("__init__.py") if "_assets" not in p.parts}
    assert listed - {"keras_vae.serving._assets"} == tree
    assert config["package-dir"] == {"keras_vae.serving._assets": "serving"}
    assert not list((ROOT / "serving").rglob("*.py")) and not list((ROOT / "export").rglob("*.py")), \
        "Python code lives only under keras_vae/"


def test_no_top_level_export_or_serving_imports_and_no_issue_numbers_in_comments():
    bad_import = re.compile(r"^\s*(from|import) (export|serving)\b", re.M)
    issue_ref = re.compile(r"#.*\b(issue|Issue) #?\d+|PAPER\.md")
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        text = path.read_text()
        if bad_import.search(text):
            offenders.append(f"{path.relative_to(ROOT)}: imports a top-level export/serving package")
        if path.is_relative_to(PACKAGE) and issue_ref.search(text):
            offenders.append(f"{path.relative_to(ROOT)}: cites an issue number or PAPER.md")
    assert offenders == []


def test_no_test_module_imports_another_test_module_or_a_conftest():
    """Shared test code lives in tests/support/ (helpers) and tests/conftest.py (fixtures, never imported)."""
    bad = re.compile(r"^\s*(from|import) tests\.(?!support\b)", re.M)
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("*.py") if bad.search(p.read_text())]
    assert offenders == []


@pytest.mark.slow  # a pytest collection in another process (about 10 s)
def test_every_test_module_has_a_test_in_the_fast_lane():
    """`pytest -m "not slow"` runs at least one test of every tests/**/test_*.py module, so the fast lane
    exercises every part of the package. Collected in a subprocess; a module skipped as a whole (an
    optional test dependency missing) is reported by -ra and left out."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not slow",
                           "-p", "no:cacheprovider", "-n", "0", str(ROOT / "tests")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    fast = {line.split("::")[0] for line in lines if "::" in line and not line.startswith("SKIPPED")}
    skipped = set(re.findall(r"^SKIPPED \[\d+\] (tests/\S+\.py):", proc.stdout, re.M))
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("test_*.py")}
    assert fast and sorted(modules - fast - skipped) == []
