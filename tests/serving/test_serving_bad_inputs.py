"""ONNX consumers and the demo server under bad input: one clear error before any big allocation,
image files that are what their names say, file modes like any other file, an unverifiable decoder
refused unless the caller opts out."""
from __future__ import annotations

import os
import socket
import stat

import numpy as np
import pytest
from PIL import Image

from keras_vae.export import contract
from keras_vae.cli import main
from keras_vae.errors import ArtifactError, ConfigError, DataError
from keras_vae.serving.demo import make_server
from keras_vae.utils.images import save_grid
from keras_vae.serving.onnx_decoder import OnnxDecoder


# grey levels: a flat 8x8 block is only a DC term; at quality 95 its quantisation step is 2/8 of a
# level after the inverse DCT, and YCbCr <-> RGB rounding (4:4:4, no subsampling) adds up to one level
# per conversion: 3 bounds both (measured max 1 here)
JPEG_FLAT_TOLERANCE = 3


@pytest.fixture(scope="module")
def dec(decoder_path):
    return OnnxDecoder(decoder_path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("name, fmt, magic", [("g.png", "PNG", b"\x89PNG"), ("g.jpg", "JPEG", b"\xff\xd8\xff"),
                                              ("g.JPEG", "JPEG", b"\xff\xd8\xff")])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_save_grid_format_follows_the_extension_and_mode_follows_umask(tmp_path, name, fmt, magic, channels):
    # flat 8x8 tiles (aligned with JPEG's 8x8 blocks): JPEG keeps them up to rounding of its DC terms
    colours = np.random.default_rng(channels).random((4, 1, 1, channels)).astype(np.float32)
    images = np.broadcast_to(colours, (4, 8, 8, channels))
    path = save_grid(images, tmp_path / name)
    assert path.read_bytes()[:len(magic)] == magic
    with Image.open(path) as im:
        assert im.format == fmt and im.size == (16, 16)
        pixels = np.asarray(im)
    expected = np.floor(np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8)
    expected = expected.reshape(2, 2, 8, 8, channels).transpose(0, 2, 1, 3, 4).reshape(16, 16, channels)
    if fmt == "PNG":  # lossless: exact
        np.testing.assert_array_equal(pixels.reshape(expected.shape), expected)
    else:  # JPEG drops alpha and is lossy: compare the colour channels loosely, as what was drawn
        want = expected[..., :3] if channels == 4 else expected
        got = pixels.reshape(16, 16, -1)
        assert got.shape[-1] == want.shape[-1]
        assert np.abs(got.astype(int) - want.astype(int)).max() <= JPEG_FLAT_TOLERANCE
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_save_grid_refuses_unknown_types_and_folders(tmp_path):
    images = np.zeros((1, 4, 4, 1), np.float32)
    with pytest.raises(ArtifactError, match=r"unknown image type '\.gif'"):
        save_grid(images, tmp_path / "g.gif")
    with pytest.raises(ArtifactError, match="is a folder"):
        save_grid(images, tmp_path)
    with pytest.raises(DataError, match="pad must be in"):
        save_grid(images, tmp_path / "g.png", pad=10 ** 6)
    many = np.broadcast_to(np.zeros((1, 64, 64, 3), np.uint8), (100_000, 64, 64, 3))  # a view: no memory
    with pytest.raises(DataError, match=r"needs \d+ MB, more than 1074 MB"):
        save_grid(many, tmp_path / "g.png")
    assert list(tmp_path.iterdir()) == []


def test_cli_sample_from_onnx_writes_jpeg_bytes(decoder_path, tmp_path, capsys):
    out = tmp_path / "s.jpg"
    assert main(["sample", str(decoder_path), "--n", "4", "--out", str(out)]) == 0
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()


@pytest.mark.parametrize("call, message", [
    (lambda d: d.sample(10 ** 9), r"n must be in \[1, \d+\] \(at most 1024 MiB"),
    (lambda d: d.sample(2.5), "n must be an integer"),
    (lambda d: d.sample(True), "n must be an integer"),
    (lambda d: d.interpolate(np.zeros(8), np.ones(8), steps=1e9), r"steps must be in \[2, \d+\]"),
    (lambda d: d.interpolate(np.zeros(8), np.ones(8), steps=5000), "steps 5000 > max_batch=1024"),
    (lambda d: d.interpolate(np.zeros(8), np.ones(8), steps=float("nan")), "steps must be an integer"),
    (lambda d: d.traverse(np.zeros(8), 0, np.zeros(2000)), "2000 values > max_batch=1024"),
    (lambda d: d.traverse(np.zeros(8), True, [1.0]), "dim must be an integer"),
    (lambda d: d.decode([[0.0] * 8, [0.0] * 7]), "not a rectangular array"),
    (lambda d: d.sample(2, temperature=float("inf")), "temperature must be a finite number"),
])
def test_huge_or_malformed_requests_fail_before_allocating(dec, call, message):
    with pytest.raises(DataError, match=message):
        call(dec)


def test_a_deleted_export_json_is_refused_unless_verify_is_false(export_copy):
    (export_copy / contract.EXPORT_JSON).unlink()
    with pytest.raises(ArtifactError, match=r"has no export\.json beside it.*verify=False"):
        OnnxDecoder(export_copy)
    assert OnnxDecoder(export_copy, verify=False).verified is False


def test_cli_sample_refuses_an_unverifiable_decoder_unless_no_verify(export_copy, tmp_path, capsys):
    (export_copy / contract.EXPORT_JSON).unlink()
    out = tmp_path / "s.png"
    assert main(["sample", str(export_copy / contract.DECODER_ONNX), "--n", "2", "--out", str(out)]) == 2
    assert "has no export.json" in capsys.readouterr().err and not out.exists()
    assert main(["sample", str(export_copy / contract.DECODER_ONNX), "--n", "2", "--out", str(out),
                 "--no-verify"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_serve_demo_refuses_an_unverifiable_decoder_unless_no_verify(export_copy, capsys, monkeypatch):
    (export_copy / contract.EXPORT_JSON).unlink()
    assert main(["serve-demo", str(export_copy), "--no-browser", "--port", "0"]) == 2
    assert "--no-verify" in capsys.readouterr().err
    seen = {}

    def fake_make_server(path, host, port):  # stop before serving forever
        seen.update(path=path, host=host, port=port)
        raise ArtifactError("stop here")

    monkeypatch.setattr("keras_vae.serving.demo.make_server", fake_make_server)
    assert main(["serve-demo", str(export_copy), "--no-browser", "--port", "0", "--no-verify"]) == 2
    assert "stop here" in capsys.readouterr().err and seen["port"] == 0


@pytest.mark.parametrize("port", ["70000", "-5", "65536", "eighty"])
def test_serve_demo_port_out_of_range(decoder_dir, capsys, port):
    with pytest.raises(SystemExit) as exc:
        main(["serve-demo", str(decoder_dir), "--port", port])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "port must be" in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def web_root(tmp_path, monkeypatch):
    """The smallest page folder make_server accepts (index.html), with the onnxruntime-web entry in a js home
    (what `keras-vae js install` fills; KERAS_VAE_JS_DIR points at it)."""
    from keras_vae.serving.assets import JS_DIR_ENV

    root = tmp_path / "web"
    root.mkdir()
    (root / "index.html").write_text("<html></html>")
    dist = tmp_path / "js-home" / "web" / "node_modules" / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    (dist / "ort.wasm.bundle.min.mjs").write_text("")
    monkeypatch.setenv(JS_DIR_ENV, str(tmp_path / "js-home"))
    return root


@pytest.mark.parametrize("host, message", [("999.1.1.1", "Octet 999"), ("1.2.3", "4 octets"),
                                           ("", "is not a host name")])
def test_demo_bad_host(decoder_dir, web_root, host, message):
    with pytest.raises(ConfigError, match=message):
        make_server(decoder_dir, host=host, port=0, web_root=web_root)


def test_demo_port_in_use(decoder_dir, web_root):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ArtifactError, match=f"port {port} on 127.0.0.1 is already in use"):
            make_server(decoder_dir, host="127.0.0.1", port=port, web_root=web_root)
    with pytest.raises(ArtifactError, match="port must be an integer in"):
        make_server(decoder_dir, port=70000, web_root=web_root)


def test_demo_port_in_use_through_the_cli(decoder_dir, capsys, monkeypatch, web_root):
    import keras_vae.serving.demo

    monkeypatch.setattr(keras_vae.serving.demo, "WEB_DIR", web_root)
    original = keras_vae.serving.demo.make_server
    monkeypatch.setattr(keras_vae.serving.demo, "make_server",
                        lambda path, host, port: original(path, host=host, port=port, web_root=web_root))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["serve-demo", str(decoder_dir), "--no-browser", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and "already in use" in err and len(err.strip().splitlines()) == 1
