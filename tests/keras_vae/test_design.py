"""Design generation: the latent search against a closed-form target, the diversity selection and the
nearest-neighbour distances against NumPy brute force, decoder-call counting, the scorer kinds (callable,
ONNX built here, the package's digit classifier), one-line errors for bad scorers, and the CLI."""
import csv
import itertools
import json

import numpy as np
import pytest

from keras_vae.applications.design import (
    CountingDecoder,
    design,
    farthest_point_selection,
    mean_pairwise_distance,
    nearest_neighbours,
    search,
)
from keras_vae.applications.scorers import make_scorer
from keras_vae.errors import ArtifactError, ConfigError, DataError, KerasVAEError
from keras_vae.sampling.samplers import prior_sampler

THRESHOLD = 2.5  # accept z_0 >= 2.5: P = 1 - Phi(2.5) = 0.0062 under N(0, I)
TRUNCATED_MEAN = 2.8227  # E[z_0 | z_0 >= 2.5] = phi(2.5) / (1 - Phi(2.5))


def identity_decoder(log):
    """z [B, 2] -> 'images' [B, 1, 2, 1] holding z itself (so a scorer can read the latent)."""
    def decode(z):
        log.append(len(z))
        return np.asarray(z, np.float32).reshape(len(z), 1, 2, 1)
    return decode


def first_coordinate(images):
    return images[:, 0, 0, 0]


@pytest.mark.parametrize("method", ["subset", "cem", "rejection"])
def test_every_method_spends_exactly_the_budget_and_counts_each_decoded_latent(method):
    log = []
    decoder = CountingDecoder(identity_decoder(log), batch_size=50)
    scorer = make_scorer(first_coordinate, (1, 2, 1), min_score=THRESHOLD)
    found = search(decoder, scorer, prior_sampler(2), budget=1000, method=method, population=128, seed=1)
    assert decoder.calls == found.decoder_calls == sum(log) == 1000
    assert decoder.batches == len(log)
    np.testing.assert_array_equal(found.scores >= THRESHOLD, True)  # the pool holds only accepted latents
    np.testing.assert_allclose(found.scores, found.latents[:, 0], rtol=1e-6)


def test_subset_search_finds_a_rare_region_and_samples_the_prior_restricted_to_it():
    scorer = make_scorer(first_coordinate, (1, 2, 1), min_score=THRESHOLD)
    runs = {m: search(CountingDecoder(identity_decoder([])), scorer, prior_sampler(2), budget=4096, method=m,
                      population=256, seed=0) for m in ("subset", "rejection")}
    assert len(runs["rejection"].scores) < 0.02 * 4096  # ~25 expected from 4096 prior draws
    assert runs["subset"].hit_rate > 0.15 and len(runs["subset"].scores) > 10 * len(runs["rejection"].scores)
    z = runs["subset"].particles
    # the last population follows N(0, I) restricted to z_0 >= 2.5 (pCN keeps the prior): the truncated-normal
    # mean in z_0 (sd 0.27; the 256 resampled particles are worth ~30 independent draws: +-0.1), the free
    # coordinate z_1 still standard normal (it mixes slower: mean +-0.5, sd within 30%)
    assert (z[:, 0] >= THRESHOLD).all() and abs(z[:, 0].mean() - TRUNCATED_MEAN) < 0.1
    assert abs(z[:, 1].mean()) < 0.5 and 0.7 < z[:, 1].std() < 1.3


def test_the_pool_keeps_a_uniform_sample_of_the_accepted_beyond_its_capacity():
    from keras_vae.applications.design import Pool

    kept = np.zeros(100)
    for rep in range(400):
        pool = Pool(keep_rejected=1, capacity=10, seed=rep)
        for start in range(0, 100, 30):  # batches of 30 (the last of 10), every item accepted
            z = np.arange(start, min(start + 30, 100), dtype=np.float32)[:, None]
            pool.add(z, z[:, :, None, None], z[:, 0], np.ones(len(z), bool))
        latents, images, scores = pool.arrays()
        assert pool.accepted == 100 and len(set(latents[:, 0])) == 10
        np.testing.assert_array_equal(images[:, :, 0, 0], latents)
        np.testing.assert_array_equal(scores, latents[:, 0])
        kept[latents[:, 0].astype(int)] += 1
    # each item is kept with probability 10/100: 400 pools keep it 40 +- 6 times (sd), so the mean over the
    # first batch's 30 items is 40 +- 1.1 and over the last batch's 10 items 40 +- 1.9; no item near 0
    assert abs(kept[:30].mean() - 40) < 5 and abs(kept[90:].mean() - 40) < 7 and kept.min() > 15


def brute_force_greedy(points, n, first):
    """The max-min rule spelled out with the full distance matrix."""
    d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    chosen = [first]
    while len(chosen) < n:
        rest = [i for i in range(len(points)) if i not in chosen]
        chosen.append(max(rest, key=lambda i: (min(d[i, j] for j in chosen), -i)))
    return chosen, d


def test_farthest_point_selection_matches_brute_force_and_is_within_half_of_the_best_subset():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(12, 3))
    for first in (0, 7):
        got = farthest_point_selection(points, 5, first=first)
        expected, d = brute_force_greedy(points, 5, first)
        assert got.tolist() == expected
    spread = min(d[i, j] for i, j in itertools.combinations(got, 2))
    best = max(min(d[i, j] for i, j in itertools.combinations(s, 2)) for s in itertools.combinations(range(12), 5))
    assert best / 2 <= spread <= best  # Gonzalez' 2-approximation of the max-min subset
    assert sorted(farthest_point_selection(points, 50).tolist()) == list(range(12))  # n > M: every point once
    assert len(farthest_point_selection(points[:0], 3)) == 0


def test_nearest_neighbours_and_pairwise_distances_match_numpy():
    rng = np.random.default_rng(4)
    queries, reference = rng.uniform(size=(7, 4, 4, 1)), rng.uniform(size=(50, 4, 4, 1))
    reference[11] = queries[2]  # an exact copy: distance 0
    index, dist = nearest_neighbours(queries, reference, chunk=3)
    full = np.linalg.norm(queries.reshape(7, 1, -1) - reference.reshape(1, 50, -1), axis=-1)
    np.testing.assert_array_equal(index, full.argmin(axis=1))
    np.testing.assert_allclose(dist, full.min(axis=1), rtol=1e-12, atol=1e-12)
    assert index[2] == 11 and dist[2] == 0.0
    pairs = [np.linalg.norm(a - b) for a, b in itertools.combinations(queries.reshape(7, -1), 2)]
    assert mean_pairwise_distance(queries) == pytest.approx(np.mean(pairs), rel=1e-9)


def test_design_on_a_model_returns_its_own_decodings_that_the_callable_accepts(vae_run):
    from keras_vae.applications.design import model_decoder
    from keras_vae.runs.folder import load_run

    _, model = load_run(vae_run)
    decoder = model_decoder(model)
    prior = prior_sampler(model.latent_dim)
    mass = decoder(prior.sample(512, seed=9)).reshape(512, -1).mean(axis=1)
    threshold = float(np.quantile(mass, 0.97))  # a region 3% of the prior decodes to

    def heavy(images):
        return images.reshape(len(images), -1).mean(axis=1)

    scorer = make_scorer(heavy, model.image_shape, min_score=threshold)
    reference = np.random.default_rng(0).uniform(size=(40, *model.image_shape)).astype(np.float32)
    result = design(decoder, scorer, prior, reference, n=6, budget=768, population=128, seed=2)
    assert result.accepted.all() and len(result.scores) == 6
    assert result.summary["decoder_calls"] == 768 and decoder.calls == 512 + 768
    again = np.asarray(model.to_unit(model.decode(result.latents)))
    np.testing.assert_allclose(result.images, again, atol=1e-5)
    np.testing.assert_allclose(result.scores, heavy(again), atol=1e-5)
    assert (result.scores >= threshold).all()
    index, l2 = nearest_neighbours(result.images, reference)
    np.testing.assert_array_equal(result.nearest_index, index)
    np.testing.assert_allclose(result.nearest_l2, l2)


def test_too_few_accepted_are_filled_with_the_best_rejected():
    scorer = make_scorer(first_coordinate, (1, 2, 1), min_score=4.5)  # P = 3.4e-6: nothing found in 300 draws
    result = design(CountingDecoder(identity_decoder([])), scorer, prior_sampler(2),
                    np.zeros((3, 1, 2, 1), np.float32), n=4, budget=300, method="rejection")
    assert not result.accepted.any() and len(result.scores) == 4
    # rejection's draws: one population of 256 (seed 0), then the 44 left (seed 256)
    all_draws = np.concatenate([prior_sampler(2).sample(256, seed=0), prior_sampler(2).sample(44, seed=256)])[:, 0]
    np.testing.assert_allclose(result.scores, np.sort(all_draws)[::-1][:4], rtol=1e-6)


def onnx_linear_classifier(path, weights, layout="nhwc", batch=None):
    """An ONNX model: image [B, 28, 28, 1] (or [B, 1, 28, 28]) -> Flatten -> MatMul W -> logits [B, K]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = [batch, 28, 28, 1] if layout == "nhwc" else [batch, 1, 28, 28]
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "W"], ["logits"])],
        "linear", [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, weights.shape[1]])],
        [numpy_helper.from_array(weights.astype(np.float32), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("layout,batch", [("nhwc", None), ("nchw", 1)])
def test_onnx_scorer_gives_the_softmax_of_its_logits(tmp_path, layout, batch):
    rng = np.random.default_rng(5)
    weights = rng.normal(size=(784, 3)) * 0.05
    path = onnx_linear_classifier(tmp_path / "cls.onnx", weights, layout, batch)
    scorer = make_scorer(str(path), (28, 28, 1), target=2, min_prob=0.5)
    images = rng.uniform(size=(5, 28, 28, 1)).astype(np.float32)
    logits = images.reshape(5, -1).astype(np.float64) @ weights  # NCHW with one channel flattens the same way
    expected = np.exp(logits[:, 2]) / np.exp(logits).sum(axis=1)
    np.testing.assert_allclose(scorer(images), expected, rtol=1e-5)
    assert scorer.describe == "cls.onnx p(2) >= 0.5"


def test_keras_file_scorer_gives_its_probabilities(tmp_path):
    import keras

    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "cls.keras")
    images = np.random.default_rng(6).uniform(size=(3, 28, 28, 1)).astype(np.float32)
    scorer = make_scorer(str(tmp_path / "cls.keras"), (28, 28, 1), target=1)  # rows sum to 1: used as they are
    np.testing.assert_allclose(scorer(images), np.asarray(model(images))[:, 1], rtol=1e-5)
    assert scorer.threshold == 0.9


def test_digit_scorer_is_the_shipped_classifier_and_recognises_real_digits():
    from keras_vae.data.embedded import load_embedded_mnist
    from keras_vae.evaluation.features import mnist_feature_net

    images, labels = load_embedded_mnist()
    threes = images[labels == 3][:20, :, :, None].astype(np.float32) / 255.0
    scores = make_scorer("digit", (28, 28, 1), target=3)(threes)
    logits = np.asarray(mnist_feature_net()[0](threes), np.float64)
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(scores, softmax[:, 3] / softmax.sum(1), rtol=1e-5)
    assert np.median(scores) > 0.9


def _bad_scorer_cases(tmp_path):
    (tmp_path / "garbage.onnx").write_bytes(b"not an onnx file")
    (tmp_path / "garbage.keras").write_bytes(b"not a zip")
    images = np.zeros((3, 28, 28, 1), np.float32)

    def build(spec, **kw):
        return lambda: make_scorer(spec, (28, 28, 1), **kw)

    def call(fn, **kw):
        return lambda: make_scorer(fn, (28, 28, 1), **kw)(images)

    def raises(x):
        raise RuntimeError("boom\nsecond line")

    return {
        "missing onnx": (build(str(tmp_path / "none.onnx"), min_score=0), ArtifactError, "does not exist"),
        "corrupt onnx": (build(str(tmp_path / "garbage.onnx"), min_score=0), ArtifactError, "not a valid ONNX"),
        "corrupt keras": (build(str(tmp_path / "garbage.keras"), min_score=0), ArtifactError, "not a loadable Keras"),
        "unknown kind": (build("classifier.pt", min_score=0), ConfigError, "expected digit"),
        "no module": (build("no_such_module_xyz:f", min_score=0), ConfigError, "cannot import"),
        "no function": (build("math:no_such_function", min_score=0), ConfigError, "has no function"),
        "digit on colour": (lambda: make_scorer("digit", (32, 32, 3), target=1), ConfigError, "28x28x1"),
        "prob without target": (build("digit", min_prob=0.9), ConfigError, "needs --target"),
        "wrong shape": (call(lambda x: np.zeros((len(x), 2, 2)), min_score=0), DataError, "returned shape [1, 2, 2]"),
        "wrong batch": (call(lambda x: np.zeros(len(x) + 2), min_score=0), DataError, "for a batch of 1"),
        "nan": (call(lambda x: np.full(len(x), np.nan), min_score=0), DataError, "NaN"),
        "raises": (call(raises, min_score=0), DataError, "RuntimeError: boom"),
        "class scores without target": (call(lambda x: np.ones((len(x), 4)) / 4, min_score=0), ConfigError,
                                        "--target 0..3"),
        "target out of range": (call(lambda x: np.ones((len(x), 4)) / 4, target=4), ConfigError, "out of range"),
        "target on plain scores": (call(lambda x: np.ones(len(x)), target=1), ConfigError, "drop --target"),
    }


def test_bad_scorers_give_one_line_each(tmp_path):
    for name, (make, error, words) in _bad_scorer_cases(tmp_path).items():
        with pytest.raises(KerasVAEError) as info:
            make()
        assert isinstance(info.value, error), (name, info.value)
        assert words in str(info.value) and "\n" not in str(info.value), (name, str(info.value))


@pytest.mark.slow  # the whole command (run, reference images, classifier): the library tests above are the fast lane
def test_cli_design_writes_the_report_with_a_python_file_scorer(vae_run, tmp_path, capsys):
    from keras_vae.cli import main
    from keras_vae.runs.folder import load_run
    from keras_vae.utils.images import to_uint8

    (tmp_path / "my_scorers.py").write_text("def ink(images):\n    return images.mean(axis=(1, 2, 3))\n")
    out = tmp_path / "design"
    argv = ["design", str(vae_run), "--scorer", f"{tmp_path / 'my_scorers.py'}:ink", "--min-score", "0.3",
            "--n", "4", "--budget", "256", "--population", "64", "--reference-examples", "100",
            "--validation-examples", "20", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "decoder calls" in printed and "design.png" in printed
    rows = list(csv.DictReader(open(out / "design.csv")))
    saved = np.load(out / "design.npz")
    summary = json.loads((out / "design.json").read_text())
    assert len(rows) == 4 and saved["latents"].shape == (4, 4) and summary["decoder_calls"] == 256
    _, model = load_run(vae_run)
    images = np.asarray(model.to_unit(model.decode(saved["latents"])))
    np.testing.assert_array_equal(saved["images"], to_uint8(images))
    for row, image in zip(rows, images):
        assert float(row["score"]) == pytest.approx(image.mean(), abs=1e-5)
        assert row["accepted"] == str(int(float(row["score"]) >= 0.3))
    assert (out / "design.png").stat().st_size > 0
    assert main(["design", str(vae_run), "--target", "10", "--budget", "64", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "out of range" in err and err.count("\n") == 1
