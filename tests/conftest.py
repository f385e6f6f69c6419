"""Shared test settings (quiet TensorFlow, few threads: CI has 2 cores) and the session's trained models.

Each session fixture below trains or exports once per test run; the folders they return are read-only
(a check at the end of the session fails if a test changed one): a test that changes a run or an export
copies it first (``tests.support.runs.copy_run``, or the ``export_copy`` fixture). Helpers live in
tests/support/; test modules import nothing from each other or from a conftest.

    vae_run            tiny-vae (MLP, latent 4) fitted one short epoch: model.keras + config.json only
    vae_export         vae_run exported (SavedModel, ONNX, float16 and int8 decoders): .run, .out, .report
    gmm_export         vae_run with a hand-made 3-component GMM sampler.json, exported: (run, out, sampler, report)
    trained_vae_run    `keras-vae train --preset tiny-vae --seed 3`: a whole run folder (metrics, samplers, figures)
    trained_vaegan_run `keras-vae train --preset tiny`: the paper's model, a whole run folder
    decoder_dir        a random-init conv decoder.onnx (latent 8, 28x28x1) + export.json, no TensorFlow model
    tfs_export         a SavedModel 'tinyvae' (versions 1 and 2, random init) in TF Serving's layout
    conditional_export a class-conditional tiny VAE (3 classes, class samplers for 0 and 1) and its export:
                       folder with run/ and export/ (tests.support.conditional)

The last five are made by processes of their own that start with the session (``background``), one at a
time per test process, beside the tests; so are the whole-flow processes some modules declare. The first three
are built in the test process, when a test first asks for them. The suite runs in two pytest-xdist workers
(pyproject's addopts: ``-n 2 --dist loadfile``, whole modules per worker; ``-n 0`` runs it in one process), and
each of these folders is made once per session, in a folder the workers share: a background job runs in the
worker that claims it first (tests.support.background) and the other reads its result; an in-process fixture
is built by the worker that asks for it first (tests.support.once), and the other waits for its done marker
and uses the same folder (an export's report comes back from JSON in both). A build never waits on another
one, so two workers cannot wait on each other; a failed build fails the waiting worker's tests with the
builder's traceback. What a test gets in memory (the GMM sampler of ``gmm_export``, ``tfs_loaded``) is made
in each worker that uses it.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")

try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # a test extra: only the property tests need it
    pass
else:  # the same examples on every run and machine: no random seed, no example database
    _hypothesis_settings.register_profile("keras-vae", derandomize=True, database=None)
    _hypothesis_settings.load_profile("keras-vae")

import contextlib  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.support.background import Background, Job, Shared  # noqa: E402
from tests.support.once import build_once  # noqa: E402
from tests.support.runs import Exported, make_test_run, snapshot  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist, which hands out whole modules (``--dist loadfile``), the modules with the most slow
    tests go first, so the longest ones are not left for the end on one worker while the other idles."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = {}
    for item in items:
        slow[item.path] = slow.get(item.path, 0) + (item.get_closest_marker("slow") is not None)
    items.sort(key=lambda item: -slow[item.path])  # stable: the order within a module stays


@contextlib.contextmanager
def read_only(*paths: Path):
    """Around the session's use of ``paths``: fail at the end if a test changed, added or removed a file."""
    before = [snapshot(p) for p in paths]
    yield
    for path, old in zip(paths, before):
        new = snapshot(path)
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        assert not changed, f"a test changed the session folder {path} (copy it first): {changed[:10]}"


def _once(tmp_path_factory, name: str, build) -> tuple[Path, object]:
    """(folder, data): ``build(folder)`` run once per session (tests.support.once) into ``folder``, a folder every
    test process of the session sees; ``data`` is what ``build`` returned, read back from JSON in every process."""
    root = _session_root(tmp_path_factory)
    folder = Shared(root / "shared", "fixtures").mktemp(name)
    return folder, build_once(root / "fixture-claims", name, lambda: build(folder))


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory):
    folder, _ = _once(tmp_path_factory, "vae_run", lambda d: str(make_test_run(d / "run-mlp", "tiny-vae")))
    run = folder / "run-mlp"
    with read_only(run):
        yield run


@pytest.fixture(scope="session")
def vae_export(vae_run, tmp_path_factory):
    from keras_vae.export.exporter import export_run

    folder, report = _once(tmp_path_factory, "vae_export",
                           lambda d: export_run(vae_run, d / "exp", float16=True, quantize=True))
    out = folder / "exp"
    with read_only(out):
        yield Exported(vae_run, out, report)


def _gmm_export(vae_run, folder: Path) -> dict:
    from keras_vae.export import contract
    from keras_vae.export.exporter import export_run
    from tests.support.decoders import hand_made_gmm_sampler

    run = folder / "run-gmm"
    shutil.copytree(vae_run, run)
    hand_made_gmm_sampler().save(run / contract.SAMPLER_JSON)
    return export_run(run, folder / "exp")


@pytest.fixture(scope="session")
def gmm_export(vae_run, tmp_path_factory):
    """(run_dir, export_dir, sampler, report): ``vae_run`` with ``hand_made_gmm_sampler`` as its sampler.json,
    exported (the run's data config is the embedded MNIST digits, which have labels)."""
    from tests.support.decoders import hand_made_gmm_sampler

    folder, report = _once(tmp_path_factory, "gmm_export", lambda d: _gmm_export(vae_run, d))
    run, out = folder / "run-gmm", folder / "exp"
    with read_only(run, out):
        yield run, out, hand_made_gmm_sampler(), report


# Session folders made by a process of their own (tests.support.background), started when the session
# begins: {fixture: (folder name, argv after the interpreter)}; OUT in argv is the folder.
BUILT_IN_BACKGROUND = {
    "trained_vae_run": ("trained-vae", ["-m", "keras_vae", "train", "--preset", "tiny-vae", "--seed", "3",
                                        "--out", "OUT", "--quiet"]),
    "trained_vaegan_run": ("trained-vaegan", ["-m", "keras_vae", "train", "--preset", "tiny", "--out", "OUT",
                                              "--quiet"]),
    "decoder_dir": ("export", ["-c", "import sys; from tests.support.decoders import build_test_decoder; "
                                     "build_test_decoder(sys.argv[1])", "OUT"]),
    "tfs_export": ("tfs_export", ["-c", "import sys; from tests.support.tfserving import TEST_MODEL_NAME as name, "
                                        "build_test_savedmodel as build; "
                                        "build(sys.argv[1], name, 1, seed=0); build(sys.argv[1], name, 2, seed=1)",
                                  "OUT"]),
    "conditional_export": ("conditional", ["-c", "import sys; from tests.support.conditional import "
                                                 "build_conditional_export; build_conditional_export(sys.argv[1])",
                                           "OUT"]),
}


def _session_root(tmp_path_factory) -> Path:
    """A folder every test process of this session shares: the base temp folder, or with pytest-xdist the
    folder above the workers' own (pytest-N/, beside popen-gw0/, popen-gw1/, ...)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def background(request, tmp_path_factory):
    """Starts, one at a time and in the order the session needs them, the session folders of
    BUILT_IN_BACKGROUND that a selected test uses and the jobs of the selected tests' modules
    (``background_jobs(items, shared)``, ``shared.mktemp(name)`` a folder shared by the session's test
    processes): they run while the first tests do. With pytest-xdist each job runs once, in the worker that
    claims it first, and the others read its result (tests.support.background)."""
    items = request.session.items
    shared = Shared(_session_root(tmp_path_factory) / "shared")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    planned = []  # (index of the first test that needs it, key, job)
    for name, (folder, argv) in BUILT_IN_BACKGROUND.items():
        first = next((i for i, item in enumerate(items) if name in getattr(item, "fixturenames", ())), None)
        if first is not None:
            out = shared.mktemp(folder) / "out"
            job = Job([sys.executable, *[str(out) if a == "OUT" else a for a in argv]],
                      shared.mktemp(f"{folder}-log"), env=env, cwd=ROOT, out=out)
            planned.append((first, name, job))
    modules = {}
    for i, item in enumerate(items):
        modules.setdefault(getattr(item, "module", None), []).append((i, item))
    for module, entries in modules.items():
        make = getattr(module, "background_jobs", None)
        if make is not None:
            jobs = make([item for _, item in entries], shared.for_scope(module.__name__))
            planned.extend((entries[0][0], key, job) for key, job in jobs.items())
    pool = Background(_session_root(tmp_path_factory) / "claims", workers=1,
                      drain_on_close=bool(os.environ.get("PYTEST_XDIST_WORKER")))
    for _, key, job in sorted(planned, key=lambda entry: entry[0]):
        pool.submit(key, job)
    yield pool
    pool.close()


def _built(background, name: str) -> Path:
    result = background.result(name)
    assert result.returncode == 0, f"building {name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return background.jobs[name].out


@pytest.fixture(scope="session")
def conditional_export(background):
    out = _built(background, "conditional_export")
    with read_only(out):
        yield out


@pytest.fixture(scope="session")
def trained_vae_run(background):
    run = _built(background, "trained_vae_run")
    with read_only(run):
        yield run


@pytest.fixture(scope="session")
def trained_vaegan_run(background):
    run = _built(background, "trained_vaegan_run")
    with read_only(run):
        yield run


@pytest.fixture(scope="session")
def decoder_dir(background):
    """A read-only export folder with decoder.onnx and export.json (copy it before changing it)."""
    d = _built(background, "decoder_dir")
    with read_only(d):
        yield d


@pytest.fixture(scope="session")
def decoder_path(decoder_dir):
    from keras_vae.export import contract

    return decoder_dir / contract.DECODER_ONNX


@pytest.fixture
def export_copy(decoder_dir, tmp_path):
    """A private copy of ``decoder_dir`` that a test may modify."""
    d = tmp_path / "export"
    shutil.copytree(decoder_dir, d)
    return d


@pytest.fixture(scope="session")
def tfs_export(background):
    """An export folder with versions 1 (seed 0) and 2 (seed 1) of the SavedModel ``tinyvae``."""
    export_dir = _built(background, "tfs_export")
    with read_only(export_dir):
        yield export_dir


@pytest.fixture(scope="session")
def tfs_loaded(tfs_export):
    """``{version: tf.saved_model.load(...)}`` of ``tfs_export``."""
    import tensorflow as tf

    from keras_vae.export import contract
    from tests.support.tfserving import TEST_MODEL_NAME

    base = tfs_export / contract.SAVEDMODEL_DIR / TEST_MODEL_NAME
    return {v: tf.saved_model.load(str(base / str(v))) for v in (1, 2)}
