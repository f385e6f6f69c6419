"""``sampler.onnx``: the latent sampler's drawing rule as a small plain-ONNX graph, and its checks.

Inputs ``eps`` float32 [N, d] (standard normal noise) and ``u`` float32 [N] (uniform in [0, 1)),
output ``z`` float32 [N, d]; the sampler's parameters are constants of the graph:

    count_i = sum_k [cum_k <= u_i]   (cum = cumsum of the float32 weights, as LatentSampler.components)
    k_i = min(count_i, K - 1);  z_i = means[k_i] + scale_tril[k_i] @ eps_i

Ops: Unsqueeze, LessOrEqual, Cast, ReduceSum, Min, Gather, MatMul, Squeeze, Add (opset 17; the
counting runs in float so every onnxruntime build, WASM included, has the kernels). The noise
itself is not in the graph: clients draw it with ``keras_vae.sampling.noise.portable_noise`` (or its JS
twin ``serving/node/noise.js``) and feed it, so the same seed gives the same latents everywhere.

A ``flow`` sampler (``keras_vae.sampling.samplers.FlowSampler``) has the same inputs and output; its graph
(``flow_nodes``) draws its whitened base mixture by the rule above and runs the affine couplings on it.

A conditional export's sampler.onnx (``build_class_sampler_proto``) takes a third input ``label`` int32 [N] and
draws row i by class label_i's rule from the padded table of ``keras_vae.export.class_table``:

    count_i = sum_j [cum[label_i, j] <= u_i];  k_i = min(count_i, last[label_i])
    z_i = means[label_i K + k_i] + scale_tril[label_i K + k_i] @ eps_i

(the same ops, plus Mul and Add on int64 row indices).

``latent_tolerance`` is the bound used to compare two float32 evaluations of the drawing rule.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from keras_vae.export import contract

FLOAT32_UNIT_ROUNDOFF = 2.0**-24


def cumulative_weights(weights) -> np.ndarray:
    """cumsum of the weights in float32, exactly as ``LatentSampler.components`` computes it."""
    return np.cumsum(np.asarray(weights, np.float64).astype(np.float32))


def build_sampler_proto(sampler, metadata: Mapping[str, str], opset: int = contract.ONNX_OPSET):
    """The sampler.onnx ModelProto of a ``LatentSampler`` (not yet checked or saved); a ``flow`` sampler's
    graph is ``flow_nodes``."""
    from onnx import numpy_helper

    if sampler.kind == "flow":
        nodes, consts = flow_nodes(sampler)
    else:
        nodes, consts = mixture_nodes(sampler, contract.LATENT_OUTPUT)
    initializers = [numpy_helper.from_array(v, name) for name, v in consts.items()]
    return _sampler_model(nodes, initializers, sampler.latent_dim, metadata, opset)


def mixture_nodes(sampler, output: str, prefix: str = "") -> tuple[list, dict[str, np.ndarray]]:
    """The mixture drawing rule (module doc) as ONNX nodes writing ``output``, and their constants."""
    from onnx import TensorProto, helper

    p = prefix
    k_count = sampler.num_components
    consts = {
        p + "cumulative_weights": cumulative_weights(sampler.weights)[None, :],  # [1, K]
        p + "means": np.asarray(sampler.means, np.float32),  # [K, d]
        p + "scale_tril": np.asarray(sampler.scale_tril, np.float32),  # [K, d, d]
        p + "last_component": np.asarray(k_count - 1, np.float32),
        p + "axis_1": np.asarray([1], np.int64),
        p + "axis_2": np.asarray([2], np.int64),
    }
    nodes = [
        helper.make_node("Unsqueeze", [contract.SAMPLER_U_INPUT, p + "axis_1"], [p + "u_column"]),  # [N, 1]
        helper.make_node("LessOrEqual", [p + "cumulative_weights", p + "u_column"], [p + "below"]),  # [N, K]
        helper.make_node("Cast", [p + "below"], [p + "below_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", [p + "below_float", p + "axis_1"], [p + "count"], keepdims=0),  # [N]
        helper.make_node("Min", [p + "count", p + "last_component"], [p + "component_float"]),
        helper.make_node("Cast", [p + "component_float"], [p + "component"], to=TensorProto.INT64),
        helper.make_node("Gather", [p + "means", p + "component"], [p + "mean"], axis=0),  # [N, d]
        helper.make_node("Gather", [p + "scale_tril", p + "component"], [p + "tril"], axis=0),  # [N, d, d]
        helper.make_node("Unsqueeze", [contract.SAMPLER_EPS_INPUT, p + "axis_2"], [p + "eps_column"]),  # [N, d, 1]
        helper.make_node("MatMul", [p + "tril", p + "eps_column"], [p + "spread_column"]),  # [N, d, 1]
        helper.make_node("Squeeze", [p + "spread_column", p + "axis_2"], [p + "spread"]),  # [N, d]
        helper.make_node("Add", [p + "mean", p + "spread"], [output]),
    ]
    return nodes, consts


def build_class_sampler_proto(classes, metadata: Mapping[str, str], opset: int = contract.ONNX_OPSET):
    """The sampler.onnx ModelProto of a conditional export (``ClassSamplers``): inputs eps, u, label -> z."""
    from onnx import TensorProto, helper, numpy_helper

    table = classes.tables()
    consts = {
        "cumulative_weights": table["cumulative"],  # [C, K]
        "last_component": table["last"].astype(np.float32),  # [C]
        "width": np.asarray(classes.width, np.int64),
        "means": table["means"],  # [C K, d]
        "scale_tril": table["scale_tril"],  # [C K, d, d]
        "axis_1": np.asarray([1], np.int64),
        "axis_2": np.asarray([2], np.int64),
    }
    nodes = [
        helper.make_node("Gather", ["cumulative_weights", contract.LABEL_INPUT], ["class_cumulative"], axis=0),
        helper.make_node("Unsqueeze", [contract.SAMPLER_U_INPUT, "axis_1"], ["u_column"]),  # [N, 1]
        helper.make_node("LessOrEqual", ["class_cumulative", "u_column"], ["below"]),  # [N, K]
        helper.make_node("Cast", ["below"], ["below_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["below_float", "axis_1"], ["count"], keepdims=0),  # [N]
        helper.make_node("Gather", ["last_component", contract.LABEL_INPUT], ["class_last"], axis=0),  # [N]
        helper.make_node("Min", ["count", "class_last"], ["component_float"]),
        helper.make_node("Cast", ["component_float"], ["component"], to=TensorProto.INT64),
        helper.make_node("Cast", [contract.LABEL_INPUT], ["label_int64"], to=TensorProto.INT64),
        helper.make_node("Mul", ["label_int64", "width"], ["class_start"]),
        helper.make_node("Add", ["class_start", "component"], ["row"]),
        helper.make_node("Gather", ["means", "row"], ["mean"], axis=0),  # [N, d]
        helper.make_node("Gather", ["scale_tril", "row"], ["tril"], axis=0),  # [N, d, d]
        helper.make_node("Unsqueeze", [contract.SAMPLER_EPS_INPUT, "axis_2"], ["eps_column"]),  # [N, d, 1]
        helper.make_node("MatMul", ["tril", "eps_column"], ["spread_column"]),  # [N, d, 1]
        helper.make_node("Squeeze", ["spread_column", "axis_2"], ["spread"]),  # [N, d]
        helper.make_node("Add", ["mean", "spread"], [contract.LATENT_OUTPUT]),
    ]
    initializers = [numpy_helper.from_array(v, name) for name, v in consts.items()]
    return _sampler_model(nodes, initializers, classes.latent_dim, metadata, opset, label=True)


def _sampler_model(nodes, initializers, d: int, metadata: Mapping[str, str], opset: int, label: bool = False):
    """The ModelProto around ``nodes``: inputs eps [N, d] and u [N] (and label int32 [N]), output z [N, d]."""
    import onnx
    from onnx import TensorProto, helper

    labels = [helper.make_tensor_value_info(contract.LABEL_INPUT, TensorProto.INT32, [contract.BATCH_AXIS])]
    graph = helper.make_graph(
        nodes, "keras_vae_latent_sampler",
        inputs=[helper.make_tensor_value_info(contract.SAMPLER_EPS_INPUT, TensorProto.FLOAT, [contract.BATCH_AXIS, d]),
                helper.make_tensor_value_info(contract.SAMPLER_U_INPUT, TensorProto.FLOAT, [contract.BATCH_AXIS]),
                *(labels if label else [])],
        outputs=[helper.make_tensor_value_info(contract.LATENT_OUTPUT, TensorProto.FLOAT, [contract.BATCH_AXIS, d])],
        initializer=initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="keras-vae")
    proto.ir_version = min(proto.ir_version, 8)  # opset 17 <-> IR 8: loadable by older runtimes too
    onnx.helper.set_model_props(proto, dict(metadata))
    return proto


def flow_nodes(sampler) -> tuple[list, dict[str, np.ndarray]]:
    """The ``flow`` sampler's drawing rule as ONNX nodes and constants: the whitened base mixture's rule
    (``mixture_nodes``, constants prefixed ``base_``) gives x0, then per coupling j:

        a = Gather(x, cond_j, axis 1);  b = Gather(x, trans_j, axis 1)
        h = Relu(MatMul(a, W1) + b1);  h = Relu(MatMul(h, W2) + b2);  o = MatMul(h, W3) + b3
        r, t = Slice(o) at |trans_j|;  s = C Tanh(r / C)
        x = Gather(Concat(a, b Exp(s) + t), order_j, axis 1)   (order_j puts the axes back in place)

    then z = m + MatMul(x, L^T). Ops: the mixture's and Relu, Slice, Div, Tanh, Mul, Exp, Concat."""
    from onnx import helper

    nodes, consts = mixture_nodes(sampler.whitened_base, "x0", prefix="base_")
    consts["clamp"] = np.asarray(sampler.clamp, np.float32)
    x = "x0"
    for j, c in enumerate(sampler.couplings):
        p = f"c{j}_"
        width = len(c.trans)
        consts.update({p + "cond": c.cond.astype(np.int64), p + "trans": c.trans.astype(np.int64),
                       p + "order": np.argsort(np.concatenate([c.cond, c.trans])).astype(np.int64),
                       p + "r_start": np.asarray([0], np.int64), p + "split": np.asarray([width], np.int64),
                       p + "end": np.asarray([2 * width], np.int64), p + "axis": np.asarray([1], np.int64)})
        nodes += [helper.make_node("Gather", [x, p + "cond"], [p + "a"], axis=1),
                  helper.make_node("Gather", [x, p + "trans"], [p + "b"], axis=1)]
        h = p + "a"
        for i, (kernel, bias) in enumerate(zip(c.kernels, c.biases)):
            consts[f"{p}kernel{i}"] = np.asarray(kernel, np.float32)
            consts[f"{p}bias{i}"] = np.asarray(bias, np.float32)
            nodes += [helper.make_node("MatMul", [h, f"{p}kernel{i}"], [f"{p}mm{i}"]),
                      helper.make_node("Add", [f"{p}mm{i}", f"{p}bias{i}"], [f"{p}pre{i}"])]
            h = f"{p}pre{i}"
            if i < len(c.kernels) - 1:
                nodes.append(helper.make_node("Relu", [h], [f"{p}h{i}"]))
                h = f"{p}h{i}"
        nodes += [
            helper.make_node("Slice", [h, p + "r_start", p + "split", p + "axis"], [p + "r"]),
            helper.make_node("Slice", [h, p + "split", p + "end", p + "axis"], [p + "t"]),
            helper.make_node("Div", [p + "r", "clamp"], [p + "r_scaled"]),
            helper.make_node("Tanh", [p + "r_scaled"], [p + "tanh"]),
            helper.make_node("Mul", [p + "tanh", "clamp"], [p + "s"]),
            helper.make_node("Exp", [p + "s"], [p + "scale"]),
            helper.make_node("Mul", [p + "b", p + "scale"], [p + "b_scaled"]),
            helper.make_node("Add", [p + "b_scaled", p + "t"], [p + "b_new"]),
            helper.make_node("Concat", [p + "a", p + "b_new"], [p + "joined"], axis=1),
            helper.make_node("Gather", [p + "joined", p + "order"], [p + "x"], axis=1),
        ]
        x = p + "x"
    consts["whitening_t"] = np.ascontiguousarray(np.asarray(sampler.whitening_tril, np.float32).T)
    consts["whitening_mean"] = np.asarray(sampler.whitening_mean, np.float32)
    nodes += [helper.make_node("MatMul", [x, "whitening_t"], ["spread"]),
              helper.make_node("Add", ["whitening_mean", "spread"], [contract.LATENT_OUTPUT])]
    return nodes, consts


def sampler_metadata(model, sampler, source_run: str, source_sha256: str, classes=None) -> dict[str, str]:
    """metadata_props of sampler.onnx: the exporter's keys with role "sampler", plus kind and noise (kind
    ``classes`` for a conditional export's, which takes a label)."""
    from keras_vae.export.onnx_export import model_metadata
    from keras_vae.sampling.noise import NOISE_ALGORITHM

    kind = contract.SAMPLER_KIND_CLASSES if classes is not None else sampler.kind
    return {**model_metadata(model, "sampler", source_run, source_sha256),
            contract.META_SAMPLER_KIND: kind, contract.META_NOISE: NOISE_ALGORITHM}


def write_sampler_onnx(sampler, metadata: Mapping[str, str], path: str | Path, classes=None):
    """Build, check (onnx.checker full check) and write sampler.onnx; returns the proto. With ``classes``
    (a conditional export's ``ClassSamplers``) the graph takes a label and draws from that class's sampler."""
    from keras_vae.export.onnx_export import save_checked

    if classes is not None:
        proto = build_class_sampler_proto(classes, metadata)
    else:
        proto = build_sampler_proto(sampler, metadata)
    save_checked(proto, path)
    return proto


def run_sampler_onnx(session, eps, u, labels=None) -> np.ndarray:
    """z [N, d] from an onnxruntime session of sampler.onnx (``labels`` [N] for a conditional export's)."""
    feeds = {contract.SAMPLER_EPS_INPUT: np.ascontiguousarray(eps, np.float32),
             contract.SAMPLER_U_INPUT: np.ascontiguousarray(u, np.float32)}
    if labels is not None:
        feeds[contract.LABEL_INPUT] = np.ascontiguousarray(labels, np.int32)
    return session.run([contract.LATENT_OUTPUT], feeds)[0]


def latent_tolerance(sampler, eps, u) -> np.ndarray:
    """Elementwise bound on |z_a - z_b| for two float32 evaluations of the drawing rule whose noise
    agrees to one float32 ulp (portable noise across runtimes):

        2 (d + 2) 2^-24 (|m_k| + |L_k| |eps|)   (two float32 sums of d + 1 terms)
        + |L_k| ulp(eps)                        (the noise's own cross-runtime difference)
    """
    from keras_vae.sampling.noise import float32_ulp

    if sampler.kind == "flow":  # the flow's own round-off bound (keras_vae.sampling.samplers.FlowSampler.error_bound)
        return sampler.error_bound(eps, u)
    eps = np.asarray(eps, np.float32)
    k = sampler.components(u)
    means = np.abs(np.asarray(sampler.means, np.float32)[k]).astype(np.float64)
    tril = np.abs(np.asarray(sampler.scale_tril, np.float32)[k]).astype(np.float64)
    d = sampler.latent_dim
    magnitude = means + np.einsum("nij,nj->ni", tril, np.abs(eps).astype(np.float64))
    return (2 * (d + 2) * FLOAT32_UNIT_ROUNDOFF * magnitude
            + np.einsum("nij,nj->ni", tril, float32_ulp(eps).astype(np.float64)))


def compare_latents(reference, got, tolerance) -> dict[str, Any]:
    """{"max_abs_diff", "max_ratio" (diff / tolerance), "passed"} of two latent arrays."""
    reference, got = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    if reference.shape != got.shape:
        return {"max_abs_diff": float("inf"), "max_ratio": float("inf"), "passed": False}
    diff = np.abs(reference - got)
    ratio = float(np.max(diff / np.maximum(tolerance, 1e-30))) if diff.size else 0.0
    return {"max_abs_diff": float(diff.max()) if diff.size else 0.0, "max_ratio": ratio, "passed": ratio <= 1.0}
