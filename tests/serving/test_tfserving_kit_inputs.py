"""Values pasted into the TF Serving kit are checked first and the YAML comes from a serializer: an image reference or
model name with a line break (or anything outside its grammar) is refused, never written into the files."""
from __future__ import annotations

import pytest
import yaml

from keras_vae.cli import main
from keras_vae.errors import ConfigError
from keras_vae.serving.tfserving import render_kit, write_kit

INJECTION = "tensorflow/serving:2.21.0\n    privileged: true"


def _fake_export(root, name="vae"):
    version = root / "savedmodel" / name / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"\x08\x01")
    return root


def test_cli_refuses_an_image_with_a_line_break_and_writes_nothing(tmp_path, capsys):
    export = _fake_export(tmp_path / "exp")
    assert main(["tfserving", str(export), "--name", "vae", "--image", INJECTION]) == 2
    err = capsys.readouterr().err
    assert "is not a Docker image reference" in err and len(err.strip().splitlines()) == 1
    assert not (export / "tfserving").exists() or not any((export / "tfserving").iterdir())


@pytest.mark.parametrize("name", ["vae\n", "vae\nname: other", "vae ", "a/b", "a:b", "", "x" * 64])
def test_model_names_outside_what_tf_serving_serves_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="model name .* must be 1-63 letters, digits"):
        render_kit(name)
    with pytest.raises(ConfigError, match="model name"):
        write_kit(_fake_export(tmp_path / "exp"), name)


@pytest.mark.parametrize("image", [
    "tensorflow/serving:2.21.0", "tensorflow/serving", "ubuntu", "localhost:5000/team/serving:2.21.0-gpu",
    "registry.example.com/a_b__c-d/e.f:v1", "[::1]:5000/serving", "gcr.io/p/serving@sha256:" + "ab" * 32,
    "tensorflow/serving:2.21.0@sha256:" + "0" * 64])
def test_docker_image_references_are_accepted_and_written_verbatim(image):
    files = render_kit("vae", image=image)
    compose = yaml.safe_load(files["docker-compose.yml"])
    assert compose["services"]["tfserving"]["image"] == image
    docs = list(yaml.safe_load_all(files["kubernetes.yaml"]))
    (container,) = [d for d in docs if d["kind"] == "Deployment"][0]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image and "securityContext" not in container


@pytest.mark.parametrize("image", [INJECTION, "tensorflow/serving:2.21.0 ", "Tensorflow Serving", "tensorflow/serving:",
                                   "a:b:c", "UPPER/Case:1", "x@sha256:abc", "serving:" + "t" * 129, "", None])
def test_strings_outside_the_reference_grammar_are_refused(image):
    from keras_vae.serving.tfserving.kit import check_image

    with pytest.raises(ConfigError, match=r"--image .*(is not a Docker image reference|must be a Docker image)"):
        check_image(image)


def test_yaml_values_cannot_add_keys(tmp_path):
    """The serializer quotes what YAML would read as something else; the parsed files hold exactly the kit's keys."""
    files = render_kit("vae", savedmodel_rel="../saved $models: x", cpu="500m", memory="512Mi", memory_limit="1Gi")
    compose = yaml.safe_load(files["docker-compose.yml"])
    service = compose["services"]["tfserving"]
    assert sorted(compose) == ["services"] and sorted(service) == [
        "command", "container_name", "image", "ports", "restart", "volumes"]
    assert service["volumes"][0] == "${KERAS_VAE_SAVEDMODEL_DIR:-../saved $$models: x}:/models:ro"  # compose's $ escape
    assert set(service["ports"]) == {"8500:8500", "8501:8501"}
    with pytest.raises(ConfigError, match=r"holds '}' or a line break"):
        render_kit("vae", savedmodel_rel="../a}b")
    for flag, value in (("cpu", "2\nprivileged: true"), ("memory", "1 Gi"), ("memory_limit", "lots")):
        with pytest.raises(ConfigError, match=f"{flag} must be a Kubernetes quantity"):
            render_kit("vae", **{flag: value})
