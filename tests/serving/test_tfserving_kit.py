"""The TF Serving kit files: generated, parsed as TF Serving / compose / Kubernetes would read them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from keras_vae.errors import ArtifactError, ConfigError
from keras_vae.serving.tfserving import KIT_FILES, render_kit, write_kit
from tests.support.tfserving import batching_parameters_class

REPO = Path(__file__).resolve().parents[2]


def fake_export(root: Path, name: str, versions=(1,)) -> Path:
    """An export dir whose layout write_kit accepts (it checks files, it does not load them)."""
    for v in versions:
        d = root / "savedmodel" / name / str(v)
        d.mkdir(parents=True)
        (d / "saved_model.pb").write_bytes(b"\x08\x01")
    return root


def parse_models_config(text: str):
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_write_kit_files_parse_and_agree(tmp_path):
    export = fake_export(tmp_path / "exp", "mnist_vae", versions=(1, 3))
    written = write_kit(export, "mnist_vae")
    out = export / "tfserving"
    assert sorted(written) == sorted(KIT_FILES)
    assert {p.parent for p in written.values()} == {out}
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temp files left behind"

    cfg = parse_models_config((out / "models.config").read_text())
    (model,) = cfg.model_config_list.config
    assert model.name == "mnist_vae"
    assert model.base_path == "/models/mnist_vae"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 1

    bp = text_format.Parse((out / "batching_parameters.txt").read_text(), batching_parameters_class()())
    assert (bp.max_batch_size.value, bp.batch_timeout_micros.value, bp.num_batch_threads.value,
            bp.max_enqueued_batches.value) == (64, 2000, 2, 100)

    compose = yaml.safe_load((out / "docker-compose.yml").read_text())
    svc = compose["services"]["tfserving"]
    assert svc["image"].startswith("tensorflow/serving:")
    assert set(svc["ports"]) == {"8500:8500", "8501:8501"}
    mounts = {v.split(":")[-2]: v.rsplit(":", 2)[0] for v in svc["volumes"]}
    # the models volume defaults (compose ${VAR:-default}) to the export's savedmodel folder
    host = mounts["/models"]
    assert host.startswith("${KERAS_VAE_SAVEDMODEL_DIR:-")
    default = host[len("${KERAS_VAE_SAVEDMODEL_DIR:-"):-1]
    assert (out / default).resolve() == (export / "savedmodel").resolve()
    assert (out / default / "mnist_vae" / "3" / "saved_model.pb").is_file()
    flags = dict(a.lstrip("-").split("=", 1) for a in svc["command"])
    assert flags["enable_batching"] == "true"
    for flag in ("model_config_file", "batching_parameters_file"):
        inside = flags[flag]
        assert inside in mounts, f"{flag}={inside} is not mounted"
        assert (out / mounts[inside]).resolve() == written[Path(inside).name].resolve()


def test_kubernetes_manifest(tmp_path):
    export = fake_export(tmp_path, "Face_VAE.v2")
    written = write_kit(export, "Face_VAE.v2", out_dir=tmp_path / "kit", cpu="4", memory="3Gi",
                        memory_limit="6Gi")
    docs = list(yaml.safe_load_all(written["kubernetes.yaml"].read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Service"]
    cm, dep, svc = kinds["ConfigMap"], kinds["Deployment"], kinds["Service"]
    # Kubernetes names are DNS-1123: lower case, '-' instead of '_' and '.'
    assert dep["metadata"]["name"] == "face-vae-v2-tfserving"
    # the ConfigMap carries exactly the kit's config files
    assert cm["data"]["models.config"] == written["models.config"].read_text()
    assert cm["data"]["batching_parameters.txt"] == written["batching_parameters.txt"].read_text()
    assert parse_models_config(cm["data"]["models.config"]).model_config_list.config[0].name == "Face_VAE.v2"
    pod = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (c,) = pod["spec"]["containers"]
    probe = c["readinessProbe"]["httpGet"]
    assert probe["path"] == "/v1/models/Face_VAE.v2/metadata"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": 8500, "rest": 8501} and probe["port"] == "rest"
    assert c["resources"]["requests"] == {"cpu": "4", "memory": "3Gi"}
    assert c["resources"]["limits"]["memory"] == "6Gi"
    flags = dict(a.lstrip("-").split("=", 1) for a in c["args"])
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    for flag in ("model_config_file", "batching_parameters_file"):
        assert os.path.dirname(flags[flag]) == mounts["config"]
        assert os.path.basename(flags[flag]) in cm["data"]
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert vols["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert mounts["models"] == "/models"  # models.config says base_path /models/<name>
    assert {p["port"] for p in svc["spec"]["ports"]} == {8500, 8501}


@pytest.mark.parametrize("policy, expected", [
    ("all", ("all", None)),
    ([3, 1], ("specific", [1, 3])),
])
def test_version_policies(tmp_path, policy, expected):
    export = fake_export(tmp_path, "vae", versions=(1, 3))
    written = write_kit(export, "vae", version_policy=policy)
    cfg = parse_models_config(written["models.config"].read_text()).model_config_list.config[0]
    kind, versions = expected
    assert cfg.model_version_policy.WhichOneof("policy_choice") == kind
    if versions is not None:
        assert list(cfg.model_version_policy.specific.versions) == versions


def test_custom_batching_values_round_trip(tmp_path):
    files = render_kit("vae", max_batch_size=16, batch_timeout_micros=0, num_batch_threads=8,
                       max_enqueued_batches=7)
    bp = text_format.Parse(files["batching_parameters.txt"], batching_parameters_class()())
    assert (bp.max_batch_size.value, bp.batch_timeout_micros.value, bp.num_batch_threads.value,
            bp.max_enqueued_batches.value) == (16, 0, 8, 7)


def test_committed_example_kit_is_current():
    """serving/tfserving/*.{config,txt,yml,yaml} are render_kit("vae"): regenerate them if this fails."""
    for name, text in render_kit("vae").items():
        assert (REPO / "serving" / "tfserving" / name).read_text() == text, name


def test_write_kit_rewrites_in_place(tmp_path):
    export = fake_export(tmp_path, "vae")
    write_kit(export, "vae", max_batch_size=8)
    written = write_kit(export, "vae", max_batch_size=32)
    assert "max_batch_size { value: 32 }" in written["batching_parameters.txt"].read_text()


def test_write_kit_errors(tmp_path):
    with pytest.raises(ArtifactError, match=r"no SavedModel for model 'vae'.*does not exist"):
        write_kit(tmp_path, "vae")
    (tmp_path / "savedmodel" / "vae" / "1").mkdir(parents=True)  # no saved_model.pb
    with pytest.raises(ArtifactError, match="no version directory with a saved_model.pb"):
        write_kit(tmp_path, "vae")
    fake_export(tmp_path / "e2", "vae", versions=(1,))
    with pytest.raises(ConfigError, match=r"versions \[2\] that are not exported; available: \[1\]"):
        write_kit(tmp_path / "e2", "vae", version_policy=[1, 2])
    with pytest.raises(ConfigError, match="version_policy must be"):
        write_kit(tmp_path / "e2", "vae", version_policy="newest")
    with pytest.raises(ConfigError, match="max_batch_size must be a positive integer"):
        write_kit(tmp_path / "e2", "vae", max_batch_size=0)
    with pytest.raises(ConfigError, match="model name 'bad/name'"):
        render_kit("bad/name")
    assert not (tmp_path / "e2" / "tfserving" / "models.config").exists(), \
        "a failed write_kit must not leave a partial kit"


def test_module_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bad = subprocess.run([sys.executable, "-m", "keras_vae.serving.tfserving", str(tmp_path), "vae"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "error: no SavedModel for model 'vae'" in bad.stderr
    fake_export(tmp_path, "vae")
    ok = subprocess.run([sys.executable, "-m", "keras_vae.serving.tfserving", str(tmp_path), "vae", "--out",
                         str(tmp_path / "k")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert sorted(Path(p).name for p in ok.stdout.split()) == sorted(KIT_FILES)


def test_client_and_kit_import_without_tensorflow():
    code = ("import sys, keras_vae.serving.client, keras_vae.serving.tfserving; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
