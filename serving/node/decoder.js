'use strict';
// Decode keras-vae latents with decoder.onnx in Node.js (onnxruntime-node, CPU).
// Contract (export/contract.py): input "z" float32 [N, D] -> output "image" float32 [N, H, W, C] in [0, 1].
// The latent sampler (export/contract.py): sampler.onnx maps noise "eps" float32 [N, D] and "u" float32 [N]
// to "z" float32 [N, D]; the noise comes from noise.js (portable: the numbers keras_vae.sampling.noise draws in Python),
// so sample(n, seed) gives the latents of the run folder, the SavedModel and OnnxDecoder for that seed.
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const { PNG } = require('pngjs');
const { portableNoise, NOISE_ALGORITHM } = require('./noise.js');

class DecoderError extends Error {}

// Session options as serving/onnx_threads.py sets them in Python: onnxruntime's intra-op threads do
// not spin while waiting for work. Measured on the 2-core machine (celeba-64 decoder, batch 1, process
// CPU ms per decode, medians of interleaved rounds): default session 20.3, spinning off 12.8-16.3.
const SESSION_OPTIONS = {
  executionProviders: ['cpu'],
  interOpNumThreads: 1,
  extra: { session: { intra_op: { allow_spinning: '0' } } },
};

/** Load decoder.onnx once; returns {session, latentDim, decode(latents)} for repeated use. */
async function loadDecoder(modelPath) {
  if (!fs.existsSync(modelPath)) throw new DecoderError(`decoder file not found: ${modelPath}`);
  let session;
  try {
    session = await ort.InferenceSession.create(modelPath, SESSION_OPTIONS);
  } catch (err) {
    throw new DecoderError(`onnxruntime-node cannot load ${modelPath}: ${err.message}`);
  }
  if (!session.inputNames.includes('z') || !session.outputNames.includes('image')) {
    throw new DecoderError(`${modelPath} must have input "z" and output "image" ` +
      `(has ${session.inputNames} -> ${session.outputNames})`);
  }
  const meta = session.inputMetadata.find((m) => m.name === 'z');
  const latentDim = Number(meta.shape[1]);
  if (!(latentDim > 0)) throw new DecoderError(`${modelPath}: input "z" has no static latent size (${meta.shape})`);
  return {
    session,
    latentDim,
    /** latents: array of arrays [N][D], or {data: Float32Array, shape: [N, D]} -> {dims, data: Float32Array} */
    async decode(latents) {
      const { data, shape } = toBatch(latents, latentDim);
      const out = await session.run({ z: new ort.Tensor('float32', data, shape) });
      return { dims: out.image.dims.slice(), data: out.image.data };
    },
  };
}

/**
 * Load the latent sampler: sampler.onnx (checked against the decoder's latent size and the noise algorithm),
 * or, when samplerPath is null, the prior N(0, I). Returns {kind, latentDim, latents(n, seed, temperature)}
 * with latents -> {data: Float32Array, shape: [n, D]}.
 */
async function loadSampler(samplerPath, latentDim) {
  if (samplerPath === null) {
    return { kind: 'prior', latentDim, path: null,
      async latents(n, seed, temperature = 1) { return { data: scaled(portableNoise(seed, n, latentDim).eps, temperature), shape: [n, latentDim] }; } };
  }
  if (!fs.existsSync(samplerPath)) throw new DecoderError(`sampler file not found: ${samplerPath}`);
  let session;
  try {
    session = await ort.InferenceSession.create(samplerPath, { executionProviders: ['cpu'] });
  } catch (err) {
    throw new DecoderError(`onnxruntime-node cannot load ${samplerPath}: ${err.message}`);
  }
  const names = [...session.inputNames].sort().join(',');
  if (names !== 'eps,u' || session.outputNames.join(',') !== 'z') {
    throw new DecoderError(`${samplerPath} must map inputs eps, u to output z (has ${session.inputNames} -> ${session.outputNames})`);
  }
  const eps = session.inputMetadata.find((m) => m.name === 'eps');
  if (Number(eps.shape[1]) !== latentDim) {
    throw new DecoderError(`${samplerPath} draws latents of size ${eps.shape[1]}, the decoder expects ${latentDim}`);
  }
  return {
    kind: 'sampler', latentDim, path: samplerPath,
    async latents(n, seed, temperature = 1) {
      let noise;
      try {
        noise = portableNoise(seed, n, latentDim);
      } catch (err) {
        throw new DecoderError(err.message);
      }
      const out = await session.run({ eps: new ort.Tensor('float32', scaled(noise.eps, temperature), [n, latentDim]),
        u: new ort.Tensor('float32', noise.u, [n]) });
      return { data: out.z.data, shape: [n, latentDim] };
    },
  };
}

function scaled(eps, temperature) {
  if (!(Number.isFinite(temperature) && temperature >= 0)) throw new DecoderError(`temperature must be a finite number >= 0, got ${temperature}`);
  return temperature === 1 ? eps : eps.map((v) => v * temperature);
}

/** The sampler beside a decoder: <folder of modelPath>/sampler.onnx when it exists, else null (the prior). */
function defaultSamplerPath(modelPath) {
  const p = path.join(path.dirname(modelPath), 'sampler.onnx');
  return fs.existsSync(p) ? p : null;
}

/** Validate latents -> {data: Float32Array, shape: [N, D]} (finite numbers, rows of length D). */
function toBatch(latents, latentDim) {
  let data;
  let shape;
  if (Array.isArray(latents)) {
    const rows = latents.length > 0 && !Array.isArray(latents[0]) ? [latents] : latents; // one code -> batch 1
    rows.forEach((r, i) => {
      if (!Array.isArray(r) || r.length !== latentDim) {
        throw new DecoderError(`latent ${i} has length ${Array.isArray(r) ? r.length : typeof r}, the decoder expects ${latentDim}`);
      }
    });
    shape = [rows.length, latentDim];
    const flat = rows.flat();
    const bad = flat.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v));
    if (bad >= 0) throw new DecoderError(`latents contain NaN, Inf or a non-number at flat index ${bad}: ${JSON.stringify(flat[bad])}`);
    data = Float32Array.from(flat);
  } else if (latents && latents.data && latents.shape) {
    shape = latents.shape.map(Number);
    if (shape.length !== 2 || shape[1] !== latentDim || shape[0] * shape[1] !== latents.data.length) {
      throw new DecoderError(`latents have shape [${shape}] with ${latents.data.length} values; expected [N, ${latentDim}]`);
    }
    data = Float32Array.from(latents.data);
  } else {
    throw new DecoderError('latents must be an array of arrays or {data, shape}');
  }
  if (shape[0] < 1) throw new DecoderError('no latents to decode');
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new DecoderError(`latents contain NaN, Inf or a non-number at flat index ${bad}`);
  return { data, shape };
}

/** Decode latents with the model at modelPath (loads a session each call; use loadDecoder to reuse). */
async function decode(modelPath, latents) {
  return (await loadDecoder(modelPath)).decode(latents);
}

/** float in [0, 1] -> uint8, the rule of keras_vae/utils/images.py: floor(clip(x, 0, 1) * 255 + 0.5). */
function toByte(x) {
  return Math.floor(Math.min(1, Math.max(0, x)) * 255 + 0.5);
}

/** PNG bytes of image i of a decoded batch (grey for C=1, RGB for C=3, RGBA for C=4). */
function pngBuffer(result, i) {
  const [, H, W, C] = result.dims;
  if (![1, 3, 4].includes(C)) throw new DecoderError(`cannot write ${C}-channel images as PNG`);
  const png = new PNG({ width: W, height: H });
  const base = i * H * W * C;
  for (let p = 0; p < H * W; p++) {
    const s = base + p * C;
    const g = toByte(result.data[s]);
    png.data[4 * p] = g;
    png.data[4 * p + 1] = C >= 3 ? toByte(result.data[s + 1]) : g;
    png.data[4 * p + 2] = C >= 3 ? toByte(result.data[s + 2]) : g;
    png.data[4 * p + 3] = C === 4 ? toByte(result.data[s + 3]) : 255;
  }
  const colorType = C === 1 ? 0 : C === 3 ? 2 : 6;
  return PNG.sync.write(png, { colorType, inputColorType: 6, inputHasAlpha: true });
}

module.exports = { loadDecoder, loadSampler, defaultSamplerPath, decode, toBatch, toByte, pngBuffer, DecoderError, NOISE_ALGORITHM };
