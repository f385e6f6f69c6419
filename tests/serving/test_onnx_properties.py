"""Property tests (hypothesis) of OnnxDecoder's inputs: any array either decodes to what a plain
onnxruntime session gives, or fails with one DataError; nothing else escapes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_vae.errors import DataError
from keras_vae.sampling.noise import portable_noise
from keras_vae.serving.onnx_decoder import OnnxDecoder
from tests.support.decoders import TEST_IMAGE_SHAPE, TEST_LATENT_DIM
from tests.support.tools import ort_reference

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MAX_BATCH = 6

dtypes = st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_, np.complex64])
shapes = st.one_of(
    st.just((TEST_LATENT_DIM,)),
    st.tuples(st.integers(0, MAX_BATCH + 2), st.just(TEST_LATENT_DIM)),
    hnp.array_shapes(min_dims=0, max_dims=3, max_side=TEST_LATENT_DIM + 1),
)
arrays = st.builds(lambda d, s: (d, s), dtypes, shapes).flatmap(
    lambda ds: hnp.arrays(ds[0], ds[1], elements=None if ds[0] is np.bool_ else
                          hnp.from_dtype(np.dtype(ds[0]), allow_nan=True, allow_infinity=True)
                          if np.dtype(ds[0]).kind in "fc" else None))
ragged = st.lists(st.lists(st.floats(-3, 3), min_size=0, max_size=TEST_LATENT_DIM + 1), min_size=1, max_size=3)


@pytest.fixture(scope="module")
def dec(decoder_path):
    return OnnxDecoder(decoder_path, max_batch=MAX_BATCH)


@FAST
@given(z=st.one_of(arrays, ragged))
def test_decode_matches_onnxruntime_or_raises_data_error(dec, decoder_path, z):
    try:
        out = dec.decode(z)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc) and len(str(exc)) < 400
        return
    arr = np.asarray(z)
    assert arr.dtype.kind == "f" and arr.shape[-1] == TEST_LATENT_DIM and arr.ndim in (1, 2)
    batch = arr.reshape(-1, TEST_LATENT_DIM).astype(np.float32)
    assert np.all(np.isfinite(batch)) and len(batch) <= MAX_BATCH
    assert out.shape == (len(batch), *TEST_IMAGE_SHAPE) and out.dtype == np.float32
    if len(batch):
        np.testing.assert_array_equal(out, ort_reference(decoder_path, batch))


@FAST
@given(n=st.one_of(st.integers(-3, 3 * MAX_BATCH), st.floats(allow_nan=True), st.booleans()),
       temperature=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 3)))
def test_sample_is_seeded_and_split_or_raises_data_error(dec, n, temperature):
    try:
        out = dec.sample(n, seed=3, temperature=temperature)
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(n, int) or float(n).is_integer()
    assert out.shape == (int(n), *TEST_IMAGE_SHAPE)
    np.testing.assert_array_equal(out, dec.sample(n, seed=3, temperature=temperature))
    eps, _ = portable_noise(3, int(n), TEST_LATENT_DIM)  # the prior sampler: z = temperature * eps
    z = (eps * np.float32(temperature)).astype(np.float32)
    np.testing.assert_allclose(out, np.concatenate([dec.decode(z[i:i + MAX_BATCH])
                                                    for i in range(0, len(z), MAX_BATCH)]), rtol=0, atol=0)
