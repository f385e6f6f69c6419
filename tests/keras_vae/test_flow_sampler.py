"""The ``flow`` latent sampler (keras_vae.sampling.samplers.FlowSampler, flow_fit): the drawing rule against a float64
evaluation and its round-off bound, the density against closed forms (identity couplings = the whitening
Gaussian; the change of variables against a finite-difference Jacobian), exact storage, corrupt files,
the fit (held-out likelihood above the Gaussian's on a curved distribution, seeded, progress), the
sampler.onnx graph and the TF twin against NumPy, and a finished run gaining a flow (add_flow_sampler)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from keras_vae.errors import ArtifactError
from keras_vae.sampling.noise import portable_noise
from keras_vae.sampling.samplers import Coupling, FlowSampler, LatentSampler, fit_gaussian, make_flow
from tests.support.decoders import hand_made_flow_sampler

D = 4


def _curved(n: int, seed: int) -> np.ndarray:
    """A banana in 4-d: x1 on a half circle, x2..x3 depending on x0 quadratically."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, n)
    arc = np.stack([np.cos(angle), np.sin(angle)], 1) * 3 + rng.normal(0, 0.15, (n, 2))
    rest = rng.normal(0, 0.3, (n, 2)) + 0.4 * arc[:, :1] ** 2
    return np.concatenate([arc, rest], 1)


def test_drawing_rule_matches_float64_within_its_bound():
    sampler = hand_made_flow_sampler()
    eps, u = portable_noise(3, 200, D)
    z = sampler.latents(eps, u)
    assert z.dtype == np.float32 and z.shape == (200, D)
    bound = sampler.error_bound(eps, u)
    k = sampler.whitened_base.components(u)
    assert set(k) == {0, 1, 2}  # every base component drawn
    exact = sampler._latents64(eps.astype(np.float64), k)
    assert np.all(np.abs(z - exact) <= bound)
    np.testing.assert_array_equal(sampler.sample(200, seed=3), z)
    # the flow bends its base: the draw is not the base mixture's m_k + L_k eps
    assert np.max(np.abs(exact - sampler.base.latents(eps, u))) > 100 * bound.max()


def test_bound_catches_a_one_percent_weight_change():
    sampler = hand_made_flow_sampler()
    eps, u = portable_noise(0, 64, D)
    c = sampler.couplings[1]
    changed = Coupling(c.cond, c.trans, (c.kernels[0], c.kernels[1], c.kernels[2] * 1.01), c.biases)
    other = dataclasses.replace(sampler, couplings=(sampler.couplings[0], changed, *sampler.couplings[2:]))
    assert np.max(np.abs(other.latents(eps, u) - sampler.latents(eps, u))) > 10 * sampler.error_bound(eps, u).max()


def test_identity_couplings_give_the_base_mixture():
    """Zero last layers: r = t = 0, so g = identity and the flow is its base mixture (whitening undone)."""
    from keras_vae.export.sampler_onnx import latent_tolerance

    base_flow = hand_made_flow_sampler()
    zeroed = [Coupling(c.cond, c.trans, (*c.kernels[:2], np.zeros_like(c.kernels[2])),
                       (*c.biases[:2], np.zeros_like(c.biases[2]))) for c in base_flow.couplings]
    flow = make_flow(base_flow.base, base_flow.whitening_mean, base_flow.whitening_tril, zeroed)
    z = np.random.default_rng(0).normal(size=(50, D)) * 2
    np.testing.assert_allclose(flow.log_prob(z), flow.base.log_prob(z), rtol=1e-12, atol=1e-10)
    eps, u = portable_noise(1, 50, D)  # m + L (L^-1 (m_k - m) + L^-1 L_k eps) = m_k + L_k eps, float32 round-off
    tolerance = latent_tolerance(flow, eps, u) + latent_tolerance(flow.base, eps, u)
    assert np.all(np.abs(flow.latents(eps, u) - flow.base.latents(eps, u)) <= tolerance)


def test_log_prob_is_the_change_of_variables():
    """log p(z) = log base(m + L x0) + log|det dx0/dx|, the Jacobian by central differences in float64."""
    sampler = hand_made_flow_sampler()
    z = sampler.sample(5, seed=2).astype(np.float64)
    x0, log_det = sampler.inverse(z)
    h = 1e-6
    for i in range(len(z)):
        forward = [sampler.inverse(z[i:i + 1] + h * e)[0][0] for e in np.eye(D)]
        backward = [sampler.inverse(z[i:i + 1] - h * e)[0][0] for e in np.eye(D)]
        jac = np.stack([(f - b) / (2 * h) for f, b in zip(forward, backward)], axis=1)  # d x0 / d z
        # d x0/dz = (d x0/dx) L^-1: log|det| = log_det - log|det L|
        expected = log_det[i] - np.sum(np.log(np.diag(sampler.whitening_tril)))
        assert np.linalg.slogdet(jac)[1] == pytest.approx(expected, abs=1e-5)
    y = sampler.whitening_mean + x0 @ sampler.whitening_tril.T
    np.testing.assert_allclose(sampler.log_prob(z), sampler.base.log_prob(y) + log_det, rtol=1e-12)
    # inverse(latents(eps)) = the whitened base draw (float32 draw, float64 inverse)
    eps32, u = portable_noise(4, 20, D)
    back, _ = sampler.inverse(sampler.latents(eps32, u))
    assert np.max(np.abs(back - sampler.whitened_base.latents(eps32, u))) < 1e-4


def test_log_prob_integrates_to_one():
    """A 2-d flow's density summed on a fine grid (trapezoid mass within 1e-3 of 1)."""
    d = 2
    sampler = hand_made_flow_sampler(d=d, couplings=4, hidden=8, seed=9)
    samples = sampler.sample(20000, seed=0).astype(np.float64)
    lo, hi = np.percentile(samples, 0.001, axis=0) - 3, np.percentile(samples, 99.999, axis=0) + 3
    axes = [np.linspace(lo[k], hi[k], 401) for k in range(d)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    density = np.exp(sampler.log_prob(grid)).reshape(401, 401)
    mass = np.trapezoid(np.trapezoid(density, axes[1], axis=1), axes[0])
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_json_round_trip_is_exact_and_atomic(tmp_path):
    sampler = hand_made_flow_sampler()
    path = sampler.save(tmp_path / "flow.json")
    assert [p.name for p in tmp_path.iterdir()] == ["flow.json"]  # no temporary file left
    loaded = LatentSampler.load(path, latent_dim=D)
    assert isinstance(loaded, FlowSampler) and loaded.kind == "flow" and loaded.num_components == 3
    eps, u = portable_noise(0, 32, D)
    np.testing.assert_array_equal(loaded.latents(eps, u), sampler.latents(eps, u))
    data = json.loads(path.read_text())
    # readers that only know mixtures find a valid mixture (the base)
    assert len(data["weights"]) == 3 and np.shape(data["scale_tril"]) == (3, D, D)
    assert data["flow"]["architecture"] == "realnvp-on-mixture-v1"


@pytest.mark.parametrize("change, match", [
    (lambda d: d.pop("flow"), "needs a 'flow' object"),
    (lambda d: d["flow"].update(architecture="maf"), "flow architecture 'maf'"),
    (lambda d: d["flow"]["couplings"][0].update(cond=[0, 0]), "must split the axes"),
    (lambda d: d["flow"]["couplings"][1]["layers"][2]["bias"].update(shape=[3]), "corrupt"),
    (lambda d: d["flow"]["couplings"][0]["layers"][0]["kernel"].update(float32_base64="@@"), "corrupt"),
    (lambda d: d["flow"].update(clamp=float("inf")), "clamp"),
    (lambda d: d["flow"]["whitening"].pop("mean"), "'mean'"),
    (lambda d: d["flow"]["whitening"].update(scale_tril=[[1.0, 0.0], [0.0, 1.0]]), "whitening"),
])
def test_corrupt_flow_files_are_refused(tmp_path, change, match):
    data = hand_made_flow_sampler().to_dict()
    change(data)
    path = tmp_path / "sampler.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=match):
        LatentSampler.load(path)


def test_a_flow_without_couplings_is_refused():
    with pytest.raises(Exception, match="needs its couplings"):
        LatentSampler("flow", np.ones(1), np.zeros((1, 2)), np.eye(2)[None])


@pytest.mark.slow
def test_fit_beats_the_gaussian_on_curved_codes_and_is_seeded():
    from keras_vae.sampling.flow_fit import fit_flow, flow_fit_steps

    train, held_out = _curved(2000, 0), _curved(400, 1)
    variances = np.full_like(train, 0.01)
    calls = []
    flow = fit_flow(train, variances, held_out, steps=300, couplings=4, hidden=32, eval_every=100, seed=1,
                    learning_rate=1e-3, progress=calls.append)
    assert sum(calls) == flow_fit_steps(300, 100) == 3
    gaussian = fit_gaussian(train, variances)
    flow_score, gaussian_score = np.mean(flow.log_prob(held_out)), np.mean(gaussian.log_prob(held_out))
    print(f"held-out log-likelihood: flow {flow_score:.3f}, gaussian {gaussian_score:.3f} nats")
    assert flow.selection["held_out_log_likelihood"] == pytest.approx(flow_score, rel=1e-12)
    assert flow.selection["base"]["held_out_log_likelihood"] == pytest.approx(gaussian_score, rel=1e-9)
    assert flow_score > gaussian_score + 0.5
    # on a mixture base the flow starts at the mixture: never below it on the held-out codes
    from keras_vae.sampling.samplers import fit_gmm

    gmm = fit_gmm(train, variances, held_out, components=(2, 4), shrinkage=(0.01,))
    on_gmm = fit_flow(train, variances, held_out, steps=200, couplings=2, hidden=16, eval_every=100, base=gmm)
    assert on_gmm.num_components == gmm.num_components
    assert np.mean(on_gmm.log_prob(held_out)) >= np.mean(gmm.log_prob(held_out)) - 1e-9
    again = fit_flow(train, variances, held_out, steps=300, couplings=4, hidden=32, eval_every=100, seed=1,
                     learning_rate=1e-3)
    eps, u = portable_noise(0, 16, D)
    np.testing.assert_array_equal(again.latents(eps, u), flow.latents(eps, u))


@pytest.mark.slow
def test_sampler_onnx_and_tf_twin_match_numpy():
    import onnx
    import onnxruntime as ort
    import tensorflow as tf

    from keras_vae.export.sampler_onnx import build_sampler_proto, latent_tolerance, run_sampler_onnx
    from keras_vae.export.sampler_tf import flow_latents_tf, portable_noise_tf

    sampler = hand_made_flow_sampler()
    proto = build_sampler_proto(sampler, {"keras_vae.role": "sampler"})
    onnx.checker.check_model(proto, full_check=True)
    ops = {node.op_type for node in proto.graph.node}
    assert ops <= {"Unsqueeze", "LessOrEqual", "Cast", "ReduceSum", "Min", "Gather", "MatMul", "Squeeze", "Add",
                   "Relu", "Slice", "Div", "Tanh", "Mul", "Exp", "Concat"}
    assert [i.name for i in proto.graph.input] == ["eps", "u"] and [o.name for o in proto.graph.output] == ["z"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for seed, n in ((0, 1), (1, 7), (2, 300)):
        eps, u = portable_noise(seed, n, D)
        reference, tolerance = sampler.latents(eps, u), latent_tolerance(sampler, eps, u)
        assert np.all(np.abs(run_sampler_onnx(session, eps, u) - reference) <= tolerance)
        tf_eps, tf_u = portable_noise_tf(tf.constant(seed, tf.int64), tf.constant(n, tf.int32), D)
        assert np.all(np.abs(flow_latents_tf(tf_eps, tf_u, sampler).numpy() - reference) <= tolerance)


@pytest.mark.slow
def test_add_flow_sampler_to_a_finished_run(trained_vae_run, tmp_path):
    """A finished run gains samplers/flow.json; sampler.json is chosen again by held-out likelihood;
    keras-vae's loaders and the evaluation's sampler resolution find the flow."""
    import shutil

    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.draw import resolve_sampler
    from keras_vae.training.after_fit import add_flow_sampler

    run = tmp_path / "run"
    shutil.copytree(trained_vae_run, run)
    result = add_flow_sampler(run, steps=200, couplings=2, hidden=16)
    assert set(result["candidates"]) == {"prior", "gaussian", "gmm", "flow"}
    assert result["chosen"] == max(result["candidates"], key=result["candidates"].get)
    assert (run / "samplers" / "flow.json").is_file()
    assert json.loads((run / "sampler.json").read_text())["kind"] == result["chosen"]
    config, model = load_run(run, sampler="flow")
    assert model.latent_sampler.kind == "flow"
    sampler, description = resolve_sampler(run, "flow", config.model.latent_dim)
    assert isinstance(sampler, FlowSampler) and description == "flow sampler (--sampler flow)"
    np.testing.assert_array_equal(np.asarray(model.sample_latents(5, seed=1)), sampler.sample(5, seed=1))


def test_a_run_without_a_flow_says_how_to_fit_one(tmp_path):
    from keras_vae.sampling.posterior import load_sampler

    with pytest.raises(ArtifactError, match="add_flow_sampler.*train.flow_steps"):
        load_sampler(tmp_path, D, "flow")
