""".npy/.npz files that hold less data than their header declares are reported as truncated (naming the file, the
array and both sizes), not as "out of memory: ask for fewer images"."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from keras_vae.cli import main
from keras_vae.data.npy_source import load_npy
from keras_vae.errors import DataError

HUGE = (100_000_000, 28, 28)  # 78.4 GB of uint8 declared, 100 bytes held


def _lying_npy(shape=HUGE, data=b"\0" * 100) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def test_npy_whose_header_claims_more_than_it_holds_is_truncated_not_out_of_memory(tmp_path):
    path = tmp_path / "digits.npy"
    path.write_bytes(_lying_npy())
    with pytest.raises(DataError, match=r"digits\.npy is truncated: its header declares an array of shape "
                                        r"\(100000000, 28, 28\) and dtype uint8 \(78,400,000,000 bytes of data\), "
                                        r"but only 100 bytes follow the header"):
        load_npy(str(path))


def test_npy_cut_short_by_a_few_bytes(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((10, 8, 8), np.float32))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"cut\.npy is truncated: .*\(2,560 bytes of data\), but only 2,557 bytes"):
        load_npy(str(path))


def test_truncated_array_inside_an_npz_is_named(tmp_path):
    path = tmp_path / "data.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", _lying_npy())
        buf = io.BytesIO()
        np.save(buf, np.arange(3))
        archive.writestr("labels.npy", buf.getvalue())
    with pytest.raises(DataError, match=r"data\.npz: array 'images' is truncated: .* only 100 bytes"):
        load_npy(str(path))


def test_complete_files_still_load(tmp_path):
    np.save(tmp_path / "ok.npy", np.zeros((4, 8, 8), np.uint8))
    np.savez_compressed(tmp_path / "ok.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.arange(4))
    assert load_npy(str(tmp_path / "ok.npy"))[0].shape == (4, 8, 8)
    images, labels, _ = load_npy(str(tmp_path / "ok.npz"))
    assert images.shape == (4, 8, 8) and labels.tolist() == [0, 1, 2, 3]


def test_cli_says_truncated(tmp_path, capsys):
    path = tmp_path / "digits.npy"
    path.write_bytes(_lying_npy())
    assert main(["train", "--data", f"npy:{path}", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is truncated" in err and "out of memory" not in err and str(path) in err
