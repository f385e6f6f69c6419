"""The ``flow`` latent sampler: a RealNVP normalizing flow on top of a Gaussian mixture, NumPy only.

A Gaussian mixture on 32-d codes cannot follow their curved shape; a flow can, but a flow from N(0, I)
over-fits a few thousand codes long before it matches a mixture's held-out likelihood. So the flow
transforms the fitted mixture (the ``gmm`` sampler, or one Gaussian), in whitened coordinates:

    y = means[k] + scale_tril[k] @ eps            the base mixture's drawing rule (k from u, as for ``gmm``)
    x0 = L^-1 (y - m)                             whitening by the codes' mean m and Cholesky factor L
    z = m + L g(x0),   g = c_1 o ... o c_J        affine couplings (Dinh et al. 2017)

with each coupling c_j:

    a = x[:, cond_j],  b = x[:, trans_j]                       (a fixed split of the d axes)
    h = relu(relu(a W1 + b1) W2 + b2);  [r, t] = h W3 + b3      (r, t: [n, |trans_j|])
    s = C tanh(r / C)                                          (log-scale, soft-clamped to (-C, C))
    x[:, trans_j] = b * exp(s) + t                             (x[:, cond_j] = a unchanged)

With g the identity (zero last layers, the fit's start) the sampler is the base mixture itself, so the fit
(``keras_vae.sampling.flow_fit``, early-stopped on held-out codes) never scores below its base. Drawing is a
deterministic map of the portable noise (eps, u), as for every sampler. The whitened base is computed once,
x0 = means_w[k] + tril_w[k] @ eps with means_w = L^-1 (means - m), tril_w = L^-1 scale_tril (lower-triangular),
so every runtime evaluates the same float32 arrays. Density: log p(z) = log base(m + L x0) - sum_j sum s_j
with x0 = g^-1(L^-1 (z - m)) (the couplings backwards).

Stored in ``sampler.json`` as ``kind: "flow"``: the base mixture in the usual fields ``weights`` [K],
``means`` [K, d], ``scale_tril`` [K, d, d] (readers that only check mixtures accept the file), and a
``flow`` object: ``whitening`` {"mean": [d], "scale_tril": [d][d]}, ``clamp`` C and ``couplings``, a list
of {"cond": [...], "trans": [...], "layers": [{"kernel": A, "bias": A} x 3]} where every array A is
{"shape": [...], "float32_base64": little-endian float32 bytes}: exact, compact (a JSON list of floats
takes four times the bytes).

``error_bound(eps, u)`` bounds |z_a - z_b| between two float32 evaluations of the drawing rule whose noise
agrees to one float32 ulp (the parity bound of sampler.onnx and the SavedModel signature), by the backward
error argument of ``keras_vae.export.roundoff``; ``TRANSCENDENTAL_ULPS`` is the error it allows each exp/tanh.
"""
from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_vae.errors import ArtifactError
from keras_vae.sampling.samplers import LatentSampler, _problem, check_latent_range

FLOW_KIND = "flow"
ARCHITECTURE = "realnvp-on-mixture-v1"
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
    """RealNVP flow on a base mixture: ``weights``/``means``/``scale_tril`` are the base mixture (code space),
    ``whitening_mean`` [d] and ``whitening_tril`` [d, d] the whitening (m, L), ``couplings`` the affine couplings
    applied to the whitened base draw (first coupling first), ``clamp`` the log-scale bound C."""

    couplings: tuple = ()
    clamp: float = DEFAULT_CLAMP
    whitening_mean: Any = None
    whitening_tril: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        d = self.latent_dim
        if self.kind != FLOW_KIND:
            raise ArtifactError(f"a flow sampler has kind 'flow', got {self.kind!r}")
        if not (isinstance(self.clamp, (int, float)) and math.isfinite(self.clamp) and 0 < self.clamp <= 20):
            raise ArtifactError(f"flow clamp must be in (0, 20], got {self.clamp!r}")
        mean = np.zeros(d) if self.whitening_mean is None else np.asarray(self.whitening_mean, np.float64)
        tril = np.eye(d) if self.whitening_tril is None else np.asarray(self.whitening_tril, np.float64)
        problem = _problem("gaussian", np.ones(1), mean.reshape(1, -1), tril.reshape(1, *tril.shape))
        if problem is None and mean.shape != (d,):
            problem = f"mean has shape {mean.shape}, expected ({d},)"
        if problem:
            raise ArtifactError(f"invalid flow sampler whitening: {problem}")
        for name, value in (("whitening_mean", mean), ("whitening_tril", tril)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        couplings = []
        for i, c in enumerate(self.couplings):
            c = Coupling(np.asarray(c.cond, np.int64), np.asarray(c.trans, np.int64),
                         tuple(np.asarray(k, np.float32) for k in c.kernels),
                         tuple(np.asarray(b, np.float32) for b in c.biases))
            problem = _coupling_problem(c, d, i)
            if problem:
                raise ArtifactError(f"invalid flow sampler: {problem}")
            couplings.append(c)
        object.__setattr__(self, "couplings", tuple(couplings))
        # the base mixture in whitened coordinates (float64; every runtime uses its float32 rounding)
        inverse = np.linalg.inv(tril)
        object.__setattr__(self, "_base_w", LatentSampler(
            "gmm", self.weights, (self.means - mean) @ inverse.T,
            np.tril(np.einsum("ij,kjl->kil", inverse, self.scale_tril))))

    @property
    def base(self) -> LatentSampler:
        """The base mixture in code space (what the flow transforms; the sampler itself when g = identity)."""
        return LatentSampler("gmm", self.weights, self.means, self.scale_tril)

    @property
    def whitened_base(self) -> LatentSampler:
        """The base mixture in whitened coordinates: means_w = L^-1 (means - m), tril_w = L^-1 scale_tril."""
        return self._base_w

    @property
    def num_parameters(self) -> int:
        return int(sum(k.size + b.size for c in self.couplings for k, b in zip(c.kernels, c.biases)))

    # --- drawing -------------------------------------------------------------------------
    def flow_forward(self, x0: np.ndarray, dtype=np.float32) -> np.ndarray:
        """g(x0): the couplings in order, in ``dtype``."""
        x = np.array(x0, dtype=dtype)
        clamp = dtype(self.clamp)
        with np.errstate(over="ignore", invalid="ignore"):
            for c in self.couplings:
                r, t = c.conditioner(x[:, c.cond], dtype)
                s = clamp * np.tanh(r / clamp)
                x[:, c.trans] = x[:, c.trans] * np.exp(s) + t
        return x

    def latents(self, eps: np.ndarray, u: np.ndarray) -> np.ndarray:
        """z = m + L g(means_w[k] + tril_w[k] eps) in float32: the drawing rule."""
        x0 = self._base_w.latents(eps, u)  # checks the noise; the whitened draw is float32
        x = self.flow_forward(x0)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (self.whitening_mean.astype(np.float32) + x @ self.whitening_tril.astype(np.float32).T)
        z = z.astype(np.float32)
        check_latent_range(z)
        return z

    # --- density -------------------------------------------------------------------------
    def inverse(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x0 = g^-1(L^-1 (z - m)), log |det d x0 / d x|) in float64 (x the whitened z)."""
        z = np.asarray(z, np.float64)
        x = np.linalg.solve(self.whitening_tril, (z - self.whitening_mean).T).T
        log_det = np.zeros(len(z))
        for c in reversed(self.couplings):
            r, t = c.conditioner(x[:, c.cond], np.float64)
            s = self.clamp * np.tanh(r / self.clamp)
            x[:, c.trans] = (x[:, c.trans] - t) * np.exp(-s)
            log_det -= np.sum(s, axis=1)
        return x, log_det

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        """log p(z), float64 [n]: the base mixture's density at m + L x0 plus the couplings' log-determinant."""
        x0, log_det = self.inverse(z)
        return LatentSampler.log_prob(self, self.whitening_mean + x0 @ self.whitening_tril.T) + log_det

    # --- parity bound --------------------------------------------------------------------
    def error_bound(self, eps: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Bound on |z_a - z_b| (an [n, d] array holding one value) between two float32 evaluations of the
        drawing rule on noise that agrees to one float32 ulp, derived as ``keras_vae.export.roundoff`` derives
        the decoders' (Higham's backward error): each evaluation is the exact map at parameters moved by a
        relative rho, so the two differ by at most the change of z when every parameter moves by 2 rho:

            kernels (fan-in K; tril_w, L: K = d):   rho = sqrt(K) u + 4 u     (summed over both evaluations)
            biases, means_w, m:                     rho = 8 u
            exp, tanh:                              rho = (2 + T) u on their outputs (T = TRANSCENDENTAL_ULPS)
            eps:                                    one float32 ulp (the noise's cross-runtime difference)

        The change is measured in float64 with every value moved by exactly that amount and a random sign:
        ``bound = 2 max |z(moved) - z| + 16 u max |z|`` (u = 2^-24; the roundoff module's SAMPLE_FACTOR and
        OUTPUT_ROUNDINGS). ``u`` picks the components (exact in every runtime); None: u = 0."""
        from keras_vae.sampling.noise import float32_ulp

        unit = UNIT_ROUNDOFF
        rng = np.random.default_rng(PERTURBATION_SEED)

        def moved(array: np.ndarray, rho: float) -> np.ndarray:
            array = np.asarray(array, np.float64)
            return array * (1.0 + rho * np.where(rng.random(array.shape) < 0.5, -1.0, 1.0))

        eps = np.asarray(eps, np.float32)
        k = self._base_w.components(np.zeros(len(eps), np.float32) if u is None else u)
        reference = self._latents64(eps.astype(np.float64), k)
        d = self.latent_dim
        elementwise = 2 * ELEMENTWISE_ROUNDINGS * unit
        square = 2 * (math.sqrt(d) + KERNEL_ROUNDINGS) * unit
        transcendental = 2 * (2 + TRANSCENDENTAL_ULPS) * unit
        couplings = [Coupling(c.cond, c.trans,
                              tuple(moved(w, 2 * (math.sqrt(w.shape[0]) + KERNEL_ROUNDINGS) * unit) for w in c.kernels),
                              tuple(moved(b, elementwise) for b in c.biases)) for c in self.couplings]
        signs = np.where(rng.random(eps.shape) < 0.5, -1.0, 1.0)
        noise = eps.astype(np.float64) + signs * float32_ulp(eps)
        perturbed = self._latents64(
            noise, k, couplings, base_means=moved(self._base_w.means, elementwise),
            base_tril=moved(self._base_w.scale_tril, square), mean=moved(self.whitening_mean, elementwise),
            tril=moved(self.whitening_tril, square), jitter=lambda values: moved(values, transcendental))
        spread = float(np.max(np.abs(perturbed - reference))) if reference.size else 0.0
        value = SAMPLE_FACTOR * spread + 2 * OUTPUT_ROUNDINGS * unit * float(np.max(np.abs(reference), initial=0.0))
        return np.full(reference.shape, value)

    def _latents64(self, eps: np.ndarray, k: np.ndarray, couplings=None, base_means=None, base_tril=None,
                   mean=None, tril=None, jitter=None) -> np.ndarray:
        """The drawing rule in float64 for components ``k``, optionally with other parameters and ``jitter``
        applied to every tanh and exp output (the error bound's moved evaluation)."""
        jitter = jitter or (lambda values: values)
        base_means = self._base_w.means if base_means is None else base_means
        base_tril = self._base_w.scale_tril if base_tril is None else base_tril
        x = base_means[k] + np.einsum("nij,nj->ni", base_tril[k], np.asarray(eps, np.float64))
        for c in couplings if couplings is not None else self.couplings:
            r, t = c.conditioner(x[:, c.cond], np.float64)
            s = self.clamp * jitter(np.tanh(r / self.clamp))
            x[:, c.trans] = x[:, c.trans] * jitter(np.exp(s)) + t
        mean = self.whitening_mean if mean is None else mean
        tril = self.whitening_tril if tril is None else tril
        return mean + x @ tril.T

    # --- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["flow"] = {
            "architecture": ARCHITECTURE, "clamp": float(self.clamp),
            "whitening": {"mean": self.whitening_mean.tolist(), "scale_tril": self.whitening_tril.tolist()},
            "couplings": [{"cond": c.cond.tolist(), "trans": c.trans.tolist(),
                           "layers": [{"kernel": _encode_array(k), "bias": _encode_array(b)}
                                      for k, b in zip(c.kernels, c.biases)]} for c in self.couplings]}
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "sampler") -> FlowSampler:
        base = LatentSampler.from_dict({**data, "kind": "gmm"}, source)  # the base mixture's checks
        flow = data.get("flow")
        if not isinstance(flow, dict) or not isinstance(flow.get("couplings"), list):
            raise ArtifactError(f"{source} is corrupt: a 'flow' sampler needs a 'flow' object with 'couplings'")
        if flow.get("architecture") != ARCHITECTURE:
            raise ArtifactError(f"{source} has flow architecture {flow.get('architecture')!r}; this keras-vae "
                                f"reads {ARCHITECTURE!r}: upgrade keras-vae or re-fit the sampler")
        couplings = []
        try:
            whitening = flow["whitening"]
            mean = np.asarray(whitening["mean"], np.float64)
            tril = np.asarray(whitening["scale_tril"], np.float64)
            for i, entry in enumerate(flow["couplings"]):
                layers = entry["layers"]
                couplings.append(Coupling(
                    np.asarray(entry["cond"], np.int64), np.asarray(entry["trans"], np.int64),
                    tuple(_decode_array(layer["kernel"], f"{source} coupling {i} kernel") for layer in layers),
                    tuple(_decode_array(layer["bias"], f"{source} coupling {i} bias") for layer in layers)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{source} is corrupt: the flow's {exc!r} is missing or malformed") from None
        try:
            return cls(kind=FLOW_KIND, weights=base.weights, means=base.means, scale_tril=base.scale_tril,
                       fitted_on=base.fitted_on, selection=base.selection, couplings=tuple(couplings),
                       clamp=flow.get("clamp", DEFAULT_CLAMP), whitening_mean=mean, whitening_tril=tril)
        except ArtifactError as exc:
            raise ArtifactError(f"{source} is corrupt: {exc}") from None


def make_flow(base: LatentSampler, whitening_mean: np.ndarray, whitening_tril: np.ndarray,
              couplings: Sequence[Coupling], clamp: float = DEFAULT_CLAMP,
              fitted_on: Mapping[str, Any] | None = None, selection: Mapping[str, Any] | None = None) -> FlowSampler:
    """A FlowSampler: ``couplings`` on the mixture ``base`` (a LatentSampler) whitened by (m [d], L [d, d])."""
    return FlowSampler(kind=FLOW_KIND, weights=base.weights, means=base.means, scale_tril=base.scale_tril,
                       fitted_on=dict(fitted_on or {}), selection=dict(selection or {}),
                       couplings=tuple(couplings), clamp=float(clamp),
                       whitening_mean=np.asarray(whitening_mean, np.float64),
                       whitening_tril=np.asarray(whitening_tril, np.float64))
