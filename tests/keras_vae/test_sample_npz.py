"""`keras-vae sample --out FILE.npz`: the images themselves, the same from a run folder and its export."""
from __future__ import annotations

import numpy as np
import pytest

from keras_vae.cli import main
from keras_vae.utils.images import make_grid, save_images_npz, to_uint8


def _sample(capsys, *argv) -> tuple[int, str, str]:
    code = main(["sample", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_npz_holds_uint8_images_and_their_metadata(tmp_path):
    images = np.linspace(0.0, 1.0, 2 * 3 * 4 * 1, dtype=np.float32).reshape(2, 3, 4, 1)
    path = save_images_npz(images, tmp_path / "s.npz", seed=7, temperature=0.5, sampler="gmm")
    with np.load(path) as data:
        assert data["images"].dtype == np.uint8 and data["images"].shape == (2, 3, 4, 1)
        np.testing.assert_array_equal(data["images"], np.floor(images * 255.0 + 0.5).astype(np.uint8))
        assert int(data["seed"]) == 7 and float(data["temperature"]) == 0.5 and str(data["sampler"]) == "gmm"
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temporary file left beside it


def test_run_folder_and_export_write_the_same_images_and_the_grid_is_their_tiling(gmm_export, tmp_path, capsys):
    run, export, sampler, _ = gmm_export
    arrays = {}
    for name, source in (("run", run), ("export", export)):
        code, out, _ = _sample(capsys, source, "--n", 9, "--seed", 4, "--out", tmp_path / f"{name}.npz")
        assert code == 0 and "wrote 9 samples" in out
        with np.load(tmp_path / f"{name}.npz") as data:
            arrays[name] = data["images"]
            assert str(data["sampler"]) == sampler.kind and int(data["seed"]) == 4
    assert arrays["run"].shape == (9, 28, 28, 1) and arrays["run"].dtype == np.uint8
    # Keras and onnxruntime decode the same latents; float32 round-off may move a pixel across a rounding
    # boundary of the 8-bit quantisation, never by more than one step.
    assert np.abs(arrays["run"].astype(int) - arrays["export"].astype(int)).max() <= 1
    code, _, _ = _sample(capsys, run, "--n", 9, "--seed", 4, "--out", tmp_path / "grid.png")
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as grid:
        np.testing.assert_array_equal(np.asarray(grid), make_grid(to_uint8(arrays["run"]))[..., 0])


def test_unknown_extension_names_the_choices(vae_run, tmp_path, capsys):
    code, _, err = _sample(capsys, vae_run, "--out", tmp_path / "s.npy")
    assert code == 2 and ".npz" in err and ".png" in err and "Traceback" not in err
    assert not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("n", [0, 10_001])
def test_count_out_of_range_is_refused_before_anything_is_written(vae_run, tmp_path, capsys, n):
    code, _, err = _sample(capsys, vae_run, "--n", n, "--out", tmp_path / "s.npz")
    assert code == 2 and "--n" in err and not (tmp_path / "s.npz").exists()


def test_a_sampler_the_export_does_not_carry_names_the_export_option_that_gives_it(gmm_export, tmp_path, capsys):
    _, export, _, _ = gmm_export
    code, out, err = _sample(capsys, export, "--sampler", "gaussian", "--out", tmp_path / "s.png")
    assert code == 2 and out == "" and not (tmp_path / "s.png").exists()
    assert err == ("keras-vae sample: error: --sampler gaussian: this export carries a 'gmm' sampler; use --sampler "
                   "prior, or export that candidate of the run: keras-vae export RUN --out DIR --sampler gaussian\n")
