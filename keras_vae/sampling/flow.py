"""The ``flow`` latent sampler: a RealNVP normalizing flow on the aggregate posterior, NumPy only.

A Gaussian mixture on 32-d codes cannot follow their curved shape; a flow can. The sampler is

    z = m + L g(eps),   g = c_1 o c_2 o ... o c_J   (affine couplings, Dinh et al. 2017)

with (m, L) the codes' mean and Cholesky factor of their covariance (the ``gaussian`` sampler's
whitening, kept in the mixture fields ``weights`` [1], ``means`` [1, d], ``scale_tril`` [1, d, d], so
readers of ``sampler.json`` that only check those fields accept the file) and each coupling c_j:

    a = x[:, cond_j],  b = x[:, trans_j]                       (a fixed split of the d axes)
    h = relu(relu(a W1 + b1) W2 + b2);  [r, t] = h W3 + b3      (r, t: [n, |trans_j|])
    s = C tanh(r / C)                                          (log-scale, soft-clamped to (-C, C))
    x[:, trans_j] = b * exp(s) + t                             (x[:, cond_j] = a unchanged)

Drawing rule (as every sampler: a deterministic map of the portable noise): z = m + L g(eps); ``u``
is unused (one component). Densities run the couplings backwards:
log p(z) = log N(eps; 0, I) - sum_j sum s_j - log |det L| with eps = g^-1(L^-1 (z - m)).

Stored in ``sampler.json`` as ``kind: "flow"`` with a ``flow`` object: ``clamp`` C and ``couplings``, a
list of {"cond": [...], "trans": [...], "layers": [{"kernel": A, "bias": A} x 3]} where every array A is
{"shape": [...], "float32_base64": little-endian float32 bytes}: exact, compact (a JSON list of floats
takes four times the bytes).

``error_bound(eps)`` bounds |z_a - z_b| between two float32 evaluations of the drawing rule whose noise
agrees to one float32 ulp (the parity bound of sampler.onnx and the SavedModel signature), by the backward
error argument of ``keras_vae.export.roundoff``; ``TRANSCENDENTAL_ULPS`` is the error it allows each exp/tanh.
"""
from __future__ import annotations

import base64
import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from keras_vae.errors import ArtifactError, DataError
from keras_vae.sampling.samplers import LatentSampler, check_latent_range

FLOW_KIND = "flow"
DEFAULT_CLAMP = 3.0
UNIT_ROUNDOFF = 2.0**-24
# exp and tanh are not correctly rounded in any runtime: NumPy/libm are within 1-2 ulp, onnxruntime's
# vectorised kernels (MLAS) and TensorFlow's Eigen approximations within a few; 16 ulp leaves room.
TRANSCENDENTAL_ULPS = 16
# The parity bound's constants, as keras_vae.export.roundoff (which the sampling layer does not import) uses them.
KERNEL_ROUNDINGS = 4
ELEMENTWISE_ROUNDINGS = 8
OUTPUT_ROUNDINGS = 8
SAMPLE_FACTOR = 2.0
PERTURBATION_SEED = 20240917


@dataclasses.dataclass(frozen=True)
class Coupling:
    """One affine coupling: ``cond`` and ``trans`` index arrays splitting the d axes, and the conditioner's
    three dense layers ``kernels`` ([|cond|, H], [H, H], [H, 2 |trans|]) and ``biases``."""

    cond: np.ndarray
    trans: np.ndarray
    kernels: tuple
    biases: tuple

    def conditioner(self, a: np.ndarray, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """(r, t) of the conditioner on ``a`` in ``dtype``."""
        h = a.astype(dtype)
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            h = h @ kernel.astype(dtype) + bias.astype(dtype)
            if i < len(self.kernels) - 1:
                h = np.maximum(h, dtype(0))
        width = len(self.trans)
        return h[:, :width], h[:, width:]


def _encode_array(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(array.shape), "float32_base64": base64.b64encode(array.tobytes()).decode("ascii")}


def _decode_array(data: Any, where: str) -> np.ndarray:
    if not isinstance(data, dict) or "shape" not in data or "float32_base64" not in data:
        raise ArtifactError(f"{where} must be {{'shape': [...], 'float32_base64': '...'}}")
    try:
        shape = tuple(int(s) for s in data["shape"])
        raw = base64.b64decode(data["float32_base64"], validate=True)
        array = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        return array.reshape(shape)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{where} is corrupt ({exc})") from None


def _coupling_problem(c: Coupling, d: int, index: int) -> str | None:
    where = f"coupling {index}"
    cond, trans = np.asarray(c.cond), np.asarray(c.trans)
    if cond.ndim != 1 or trans.ndim != 1 or len(cond) < 1 or len(trans) < 1:
        return f"{where}: cond and trans must be non-empty index lists"
    if sorted(np.concatenate([cond, trans]).tolist()) != list(range(d)):
        return f"{where}: cond and trans must split the axes 0..{d - 1}"
    if len(c.kernels) != 3 or len(c.biases) != 3:
        return f"{where}: the conditioner needs 3 layers, got {len(c.kernels)}"
    width_in = len(cond)
    for j, (kernel, bias) in enumerate(zip(c.kernels, c.biases)):
        if kernel.ndim != 2 or kernel.shape[0] != width_in or bias.shape != (kernel.shape[1],):
            return f"{where} layer {j}: kernel {kernel.shape} / bias {bias.shape} do not chain from width {width_in}"
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
            return f"{where} layer {j} holds NaN or infinite values"
        width_in = kernel.shape[1]
    if width_in != 2 * len(trans):
        return f"{where}: the last layer must output 2 x {len(trans)} values, got {width_in}"
    return None


@dataclasses.dataclass(frozen=True)
class FlowSampler(LatentSampler):
    """RealNVP flow sampler: ``means``/``scale_tril`` [1, ...] hold the whitening (m, L), ``couplings``
    the affine couplings applied to eps (first coupling first), ``clamp`` the log-scale bound C."""

    couplings: tuple = ()
    clamp: float = DEFAULT_CLAMP

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind != FLOW_KIND or self.num_components != 1:
            raise ArtifactError(f"a flow sampler has kind 'flow' and one whitening component, got {self.kind!r} "
                                f"with {self.num_components}")
        if not (math.isfinite(self.clamp) and 0 < self.clamp <= 20):
            raise ArtifactError(f"flow clamp must be in (0, 20], got {self.clamp!r}")
        couplings = []
        for i, c in enumerate(self.couplings):
            c = Coupling(np.asarray(c.cond, np.int64), np.asarray(c.trans, np.int64),
                         tuple(np.asarray(k, np.float32) for k in c.kernels),
                         tuple(np.asarray(b, np.float32) for b in c.biases))
            problem = _coupling_problem(c, self.latent_dim, i)
            if problem:
                raise ArtifactError(f"invalid flow sampler: {problem}")
            couplings.append(c)
        object.__setattr__(self, "couplings", tuple(couplings))

    @property
    def num_parameters(self) -> int:
        return int(sum(k.size + b.size for c in self.couplings for k, b in zip(c.kernels, c.biases)))

    # --- drawing -------------------------------------------------------------------------
    def flow_forward(self, eps: np.ndarray, dtype=np.float32) -> np.ndarray:
        """g(eps): the couplings in order (the whitened latents), in ``dtype``."""
        x = np.array(eps, dtype=dtype)
        clamp = dtype(self.clamp)
        with np.errstate(over="ignore", invalid="ignore"):
            for c in self.couplings:
                r, t = c.conditioner(x[:, c.cond], dtype)
                s = clamp * np.tanh(r / clamp)
                x[:, c.trans] = x[:, c.trans] * np.exp(s) + t
        return x

    def latents(self, eps: np.ndarray, u: np.ndarray) -> np.ndarray:
        """z = m + L g(eps) in float32 (``u`` is checked but unused): the drawing rule."""
        eps = np.asarray(eps, np.float32)
        u = np.asarray(u, np.float32).reshape(-1)
        if eps.ndim != 2 or eps.shape[1] != self.latent_dim or eps.shape[0] != u.shape[0]:
            raise DataError(f"noise of shape eps {eps.shape}, u {u.shape} does not fit a sampler of latent "
                            f"dimension {self.latent_dim}: pass eps [n, {self.latent_dim}] and u [n]")
        if not (np.all(np.isfinite(eps)) and np.all(np.isfinite(u))):
            raise DataError("the noise holds NaN or infinite values (a temperature beyond the float32 range?): "
                            "pass finite eps and u")
        x = self.flow_forward(eps)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (self.means.astype(np.float32)[0] + x @ self.scale_tril.astype(np.float32)[0].T).astype(np.float32)
        check_latent_range(z)
        return z

    # --- density -------------------------------------------------------------------------
    def inverse(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(eps = g^-1(L^-1 (z - m)), log |det d eps / d z|), float64."""
        z = np.asarray(z, np.float64)
        tril = self.scale_tril[0]
        x = np.linalg.solve(tril, (z - self.means[0]).T).T
        log_det = np.full(len(z), -float(np.sum(np.log(np.diag(tril)))))
        for c in reversed(self.couplings):
            r, t = c.conditioner(x[:, c.cond], np.float64)
            s = self.clamp * np.tanh(r / self.clamp)
            x[:, c.trans] = (x[:, c.trans] - t) * np.exp(-s)
            log_det -= np.sum(s, axis=1)
        return x, log_det

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        """log p(z), float64 [n] (change of variables through the couplings and the whitening)."""
        eps, log_det = self.inverse(z)
        d = self.latent_dim
        return -0.5 * (np.sum(eps * eps, axis=1) + d * math.log(2 * math.pi)) + log_det

    @property
    def marginal_std(self) -> np.ndarray:
        """Per-axis standard deviation of the fitted codes (the whitening's; the flow keeps it close)."""
        return np.sqrt(np.sum(self.scale_tril[0] ** 2, axis=1))

    # --- parity bound --------------------------------------------------------------------
    def error_bound(self, eps: np.ndarray) -> np.ndarray:
        """Bound on |z_a - z_b| (an [n, d] array holding one value) between two float32 evaluations of the
        drawing rule on noise that agrees to one float32 ulp, derived as ``keras_vae.export.roundoff`` derives
        the decoders' (Higham's backward error): each evaluation is the exact map at parameters moved by a
        relative rho, so the two differ by at most the change of z when every parameter moves by 2 rho:

            kernels (fan-in K):          rho = sqrt(K) u + 4 u     (summed over both evaluations)
            biases, m, L's products:     rho = 8 u
            exp, tanh:                   rho = (2 + T) u on their outputs (T = TRANSCENDENTAL_ULPS)
            eps:                         one float32 ulp (the noise's cross-runtime difference)

        The change is measured in float64 with every value moved by exactly that amount and a random sign:
        ``bound = 2 max |z(moved) - z| + 16 u max |z|`` (u = 2^-24; the roundoff module's SAMPLE_FACTOR and
        OUTPUT_ROUNDINGS)."""
        from keras_vae.sampling.noise import float32_ulp

        u = UNIT_ROUNDOFF
        rng = np.random.default_rng(PERTURBATION_SEED)

        def moved(array: np.ndarray, rho: float) -> np.ndarray:
            array = np.asarray(array, np.float64)
            return array * (1.0 + rho * np.where(rng.random(array.shape) < 0.5, -1.0, 1.0))

        eps = np.asarray(eps, np.float32)
        reference = self._latents64(eps.astype(np.float64))
        elementwise = 2 * ELEMENTWISE_ROUNDINGS * u
        transcendental = 2 * (2 + TRANSCENDENTAL_ULPS) * u
        couplings = [Coupling(c.cond, c.trans,
                              tuple(moved(k, 2 * (math.sqrt(k.shape[0]) + KERNEL_ROUNDINGS) * u) for k in c.kernels),
                              tuple(moved(b, elementwise) for b in c.biases)) for c in self.couplings]
        signs = np.where(rng.random(eps.shape) < 0.5, -1.0, 1.0)
        noise = eps.astype(np.float64) + signs * float32_ulp(eps)
        d = self.latent_dim
        perturbed = self._latents64(
            noise, couplings, means=moved(self.means[0], elementwise),
            tril=moved(self.scale_tril[0], 2 * (math.sqrt(d) + KERNEL_ROUNDINGS) * u),
            jitter=lambda values: moved(values, transcendental))
        spread = float(np.max(np.abs(perturbed - reference))) if reference.size else 0.0
        value = SAMPLE_FACTOR * spread + 2 * OUTPUT_ROUNDINGS * u * float(np.max(np.abs(reference), initial=0.0))
        return np.full(reference.shape, value)

    def _latents64(self, eps: np.ndarray, couplings=None, means=None, tril=None, jitter=None) -> np.ndarray:
        """z = m + L g(eps) in float64, optionally with other parameters and ``jitter`` applied to every
        tanh and exp output (the error bound's moved evaluation)."""
        jitter = jitter or (lambda values: values)
        x = np.array(eps, dtype=np.float64)
        for c in couplings if couplings is not None else self.couplings:
            r, t = c.conditioner(x[:, c.cond], np.float64)
            s = self.clamp * jitter(np.tanh(r / self.clamp))
            x[:, c.trans] = x[:, c.trans] * jitter(np.exp(s)) + t
        means = self.means[0] if means is None else means
        tril = self.scale_tril[0] if tril is None else tril
        return means + x @ tril.T

    # --- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["flow"] = {
            "architecture": "realnvp-affine-coupling-v1", "clamp": float(self.clamp),
            "couplings": [{"cond": c.cond.tolist(), "trans": c.trans.tolist(),
                           "layers": [{"kernel": _encode_array(k), "bias": _encode_array(b)}
                                      for k, b in zip(c.kernels, c.biases)]} for c in self.couplings]}
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "sampler") -> "FlowSampler":
        base = LatentSampler.from_dict({**data, "kind": "gaussian"}, source)  # the whitening's checks
        flow = data.get("flow")
        if not isinstance(flow, dict) or not isinstance(flow.get("couplings"), list):
            raise ArtifactError(f"{source} is corrupt: a 'flow' sampler needs a 'flow' object with 'couplings'")
        if flow.get("architecture") != "realnvp-affine-coupling-v1":
            raise ArtifactError(f"{source} has flow architecture {flow.get('architecture')!r}; this keras-vae "
                                "reads 'realnvp-affine-coupling-v1': upgrade keras-vae or re-fit the sampler")
        couplings = []
        for i, entry in enumerate(flow["couplings"]):
            try:
                layers = entry["layers"]
                couplings.append(Coupling(
                    np.asarray(entry["cond"], np.int64), np.asarray(entry["trans"], np.int64),
                    tuple(_decode_array(layer["kernel"], f"{source} coupling {i} kernel") for layer in layers),
                    tuple(_decode_array(layer["bias"], f"{source} coupling {i} bias") for layer in layers)))
            except (KeyError, TypeError, ValueError) as exc:
                raise ArtifactError(f"{source} is corrupt: coupling {i} ({exc!r})") from None
        try:
            return cls(kind=FLOW_KIND, weights=base.weights, means=base.means, scale_tril=base.scale_tril,
                       fitted_on=base.fitted_on, selection=base.selection, couplings=tuple(couplings),
                       clamp=float(flow.get("clamp", DEFAULT_CLAMP)))
        except ArtifactError as exc:
            raise ArtifactError(f"{source} is corrupt: {exc}") from None


def make_flow(means: np.ndarray, scale_tril: np.ndarray, couplings: Sequence[Coupling],
              clamp: float = DEFAULT_CLAMP, fitted_on: Mapping[str, Any] | None = None,
              selection: Mapping[str, Any] | None = None) -> FlowSampler:
    """A FlowSampler from the whitening (m [d], L [d, d]) and couplings."""
    means = np.asarray(means, np.float64).reshape(1, -1)
    tril = np.asarray(scale_tril, np.float64).reshape(1, means.shape[1], means.shape[1])
    return FlowSampler(kind=FLOW_KIND, weights=np.ones(1), means=means, scale_tril=tril,
                       fitted_on=dict(fitted_on or {}), selection=dict(selection or {}),
                       couplings=tuple(couplings), clamp=float(clamp))
