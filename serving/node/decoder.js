'use strict';
// Decode keras-vae latents with decoder.onnx in Node.js (onnxruntime-node, CPU).
// Contract (export/contract.py): input "z" float32 [N, D] -> output "image" float32 [N, H, W, C] in [0, 1].
// The latent sampler (export/contract.py): sampler.onnx maps noise "eps" float32 [N, D] and "u" float32 [N]
// to "z" float32 [N, D]; the noise comes from noise.js (portable: the numbers keras_vae.sampling.noise draws in Python),
// so sample(n, seed) gives the latents of the run folder, the SavedModel and OnnxDecoder for that seed.
// export.json: a file it lists must be there and match its recorded size and SHA-256 (as OnnxDecoder checks);
// a listed sampler.onnx that is missing is an error, never a silent switch to the prior.
// Class-conditional exports (export.json "conditional"): decoder.onnx and sampler.onnx also take "label" int32 [N]
// in [0, num_classes); decode(latents, label) and latents(n, seed, temperature, label) then need one (an integer, or
// one per row), and an unconditional export refuses one. The class count comes from the export.json beside the file.
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const { PNG } = require('pngjs');
const { portableNoise, checkCount, checkSeed, MAX_BATCH, NOISE_ALGORITHM } = require('./noise.js');

class DecoderError extends Error {}

// Latents and their squares must stay finite in float32 (keras_vae/sampling/samplers.py LATENT_LIMIT); the
// portable noise has |eps| <= NOISE_BOUND.
const FLOAT32_MAX = 3.4028234663852886e38;
const LATENT_LIMIT = Math.sqrt(FLOAT32_MAX);
const NOISE_BOUND = Math.sqrt(2 * Math.log(2 ** 24));

/** The "files" table of export.json in `folder`, or null when there is none (a DecoderError when it is unreadable). */
function listedFiles(folder) {
  const manifest = path.join(folder, 'export.json');
  if (!fs.existsSync(manifest)) return null;
  let files;
  try {
    files = JSON.parse(fs.readFileSync(manifest, 'utf8')).files;
  } catch (err) {
    throw new DecoderError(`${manifest} is unreadable (${err.message}): re-export the model`);
  }
  if (!files || typeof files !== 'object' || Array.isArray(files)) {
    throw new DecoderError(`${manifest} has no "files" table: re-export the model`);
  }
  return files;
}

/**
 * Check `file` against the export.json beside it: listed, with "sha256" (64 hex digits) and "bytes" (an integer)
 * equal to the file's. Returns false when there is no export.json; throws a DecoderError naming the field otherwise.
 */
function verifyListed(file) {
  const folder = path.dirname(file);
  const files = listedFiles(folder);
  if (files === null) return false;
  const name = path.basename(file);
  const manifest = path.join(folder, 'export.json');
  if (!Object.prototype.hasOwnProperty.call(files, name)) {
    throw new DecoderError(`${manifest} does not list ${name} under "files": the file is not part of that export; re-export it`);
  }
  const entry = files[name];
  const where = `${manifest}: files["${name}"]`;
  if (!entry || typeof entry !== 'object') throw new DecoderError(`${where} must be an object with "sha256" and "bytes": re-export the model`);
  if (typeof entry.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(entry.sha256)) {
    throw new DecoderError(`${where}.sha256 must be 64 lower-case hex digits, got ${JSON.stringify(entry.sha256)}: re-export the model`);
  }
  const size = entry.bytes;
  if (size !== undefined && size !== null && !(Number.isSafeInteger(size) && size >= 0)) {
    throw new DecoderError(`${where}.bytes must be an integer >= 0, got ${typeof size} ${JSON.stringify(size)}: re-export the model`);
  }
  const data = fs.readFileSync(file);
  const differs = [];
  if (size !== undefined && size !== null && data.length !== size) differs.push(`size ${data.length} bytes, recorded ${size}`);
  const sha = crypto.createHash('sha256').update(data).digest('hex');
  if (sha !== entry.sha256) differs.push(`sha256 ${sha.slice(0, 16)}..., recorded ${entry.sha256.slice(0, 16)}...`);
  if (differs.length) {
    throw new DecoderError(`${file} does not match export.json: ${differs.join('; ')}; the file was changed or is corrupt: re-export it`);
  }
  return true;
}

/** A DecoderError when the export.json in `folder` lists `name` but the file is missing (an incomplete export). */
function checkListedPresent(folder, name, instead) {
  const files = listedFiles(folder);
  const file = path.join(folder, name);
  if (files && Object.prototype.hasOwnProperty.call(files, name) && !fs.existsSync(file)) {
    throw new DecoderError(`${file} is missing, but export.json lists it: the export is incomplete; copy the whole ` +
      `export folder or re-export it${instead ? ` (${instead})` : ''}`);
  }
}

/**
 * The exported sampler.json beside sampler.onnx (when listed or present): verified against export.json, and its
 * weights, means and scale_tril finite in float32 with latents z = m + L eps whose squares stay finite (the checks of
 * LatentSampler in keras_vae/sampling/samplers.py).
 */
function checkSamplerJson(samplerPath, latentDim) {
  const folder = path.dirname(samplerPath);
  const file = path.join(folder, 'sampler.json');
  checkListedPresent(folder, 'sampler.json', 'or pass --sampler prior to sample the prior N(0, I) on purpose');
  if (!fs.existsSync(file)) return;
  verifyListed(file);
  let data;
  try {
    data = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new DecoderError(`${file} is not valid JSON: ${err.message}`);
  }
  const bad = (what) => new DecoderError(`${file} is corrupt: ${what}; re-export the model`);
  if (!data || data.format !== 'keras-vae-latent-sampler') throw bad('it is not a keras-vae latent sampler');
  if (data.latent_dim !== latentDim) throw bad(`latent_dim ${data.latent_dim}, the decoder expects ${latentDim}`);
  const { weights, means } = data;
  const tril = data.scale_tril;
  const K = Array.isArray(weights) ? weights.length : 0;
  const rows = (a, n) => Array.isArray(a) && a.length === n && a.every((r) => Array.isArray(r) && r.length === latentDim);
  if (!K || !rows(means, K) || !Array.isArray(tril) || tril.length !== K || !tril.every((m) => rows(m, latentDim))) {
    throw bad(`weights [K], means [K][${latentDim}] and scale_tril [K][${latentDim}][${latentDim}] do not fit`);
  }
  for (const [name, values] of [['weights', weights], ['means', means.flat()], ['scale_tril', tril.flat(2)]]) {
    const i = values.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) > FLOAT32_MAX);
    if (i >= 0) throw bad(`${name} holds ${JSON.stringify(values[i])}, not a number in the float32 range (|x| <= ${FLOAT32_MAX.toPrecision(3)})`);
  }
  for (let k = 0; k < K; k++) {
    for (let i = 0; i < latentDim; i++) {
      const reach = Math.abs(means[k][i]) + NOISE_BOUND * tril[k][i].reduce((a, v) => a + Math.abs(v), 0);
      if (!(reach <= LATENT_LIMIT)) {
        throw bad(`${Math.abs(means[k][i]) > LATENT_LIMIT ? 'means' : 'scale_tril'} lets latents reach ${reach.toPrecision(3)}, ` +
          `whose square overflows float32 (|z| <= ${LATENT_LIMIT.toPrecision(3)})`);
      }
    }
  }
}

/** Latents as drawn: a DecoderError unless every value is finite with |z| <= LATENT_LIMIT. */
function checkLatentRange(z) {
  const i = z.findIndex((v) => !(Math.abs(v) <= LATENT_LIMIT));
  if (i >= 0) {
    throw new DecoderError(`the drawn latents reach ${z[i]} at flat index ${i}, beyond what float32 decodes ` +
      `(|z| <= ${LATENT_LIMIT.toPrecision(3)}): lower the temperature`);
  }
  return z;
}

// Session options as serving/onnx_threads.py sets them in Python: onnxruntime's intra-op threads do
// not spin while waiting for work. Measured on the 2-core machine (celeba-64 decoder, batch 1, process
// CPU ms per decode, medians of interleaved rounds): default session 20.3, spinning off 12.8-16.3.
const SESSION_OPTIONS = {
  executionProviders: ['cpu'],
  interOpNumThreads: 1,
  extra: { session: { intra_op: { allow_spinning: '0' } } },
};

/** Classes of a graph with a "label" input, from export.json "conditional" beside it (0 without the input). */
function graphClasses(file, session) {
  if (!session.inputNames.includes('label')) return 0;
  const manifest = path.join(path.dirname(file), 'export.json');
  let classes;
  try {
    classes = JSON.parse(fs.readFileSync(manifest, 'utf8')).conditional.num_classes;
  } catch (err) {
    classes = undefined;
  }
  if (!(Number.isSafeInteger(classes) && classes > 0)) {
    throw new DecoderError(`${file} takes a class label, and ${manifest} names no "conditional.num_classes": keep the ` +
      'export folder together (re-export if export.json was lost)');
  }
  return classes;
}

/**
 * Labels for a call of n rows: null for an unconditional graph (a DecoderError when `label` is given), else an
 * Int32Array of n labels from one integer or n of them, each in [0, classes) (a DecoderError otherwise).
 */
function checkLabels(label, n, classes) {
  const given = label !== undefined && label !== null;
  if (!classes) {
    if (given) throw new DecoderError('this export is not class-conditional (it takes no label): drop --class');
    return null;
  }
  if (!given) throw new DecoderError(`this export is class-conditional (${classes} classes): pass --class K, an integer in [0, ${classes})`);
  const values = Array.isArray(label) || ArrayBuffer.isView(label) ? Array.from(label) : new Array(n).fill(label);
  if (values.length !== n) throw new DecoderError(`pass one label or ${n} (one per row), got ${values.length}`);
  const bad = values.find((v) => !(Number.isInteger(v) && v >= 0 && v < classes));
  if (bad !== undefined) throw new DecoderError(`label ${bad} is out of range: this export has ${classes} classes, pass an integer in [0, ${classes})`);
  return Int32Array.from(values);
}

/** Load decoder.onnx once; returns {session, latentDim, numClasses, decode(latents, label)} for repeated use. */
async function loadDecoder(modelPath) {
  if (!fs.existsSync(modelPath)) throw new DecoderError(`decoder file not found: ${modelPath}`);
  verifyListed(modelPath);
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
  const numClasses = graphClasses(modelPath, session);
  return {
    session,
    latentDim,
    numClasses,
    /** latents: array of arrays [N][D], or {data: Float32Array, shape: [N, D]}; label: a conditional export's class
     * (an integer or one per row) -> {dims, data: Float32Array} */
    async decode(latents, label) {
      const { data, shape } = toBatch(latents, latentDim);
      const labels = checkLabels(label, shape[0], numClasses);
      const feeds = { z: new ort.Tensor('float32', data, shape) };
      if (labels) feeds.label = new ort.Tensor('int32', labels, [shape[0]]);
      const out = await session.run(feeds);
      return { dims: out.image.dims.slice(), data: out.image.data };
    },
  };
}

/**
 * Load the latent sampler: sampler.onnx (checked against the decoder's latent size and the noise algorithm),
 * or, when samplerPath is null, the prior N(0, I). Returns {kind, latentDim, numClasses, latents(n, seed, temperature,
 * label)} (a conditional export's sampler.onnx takes the label: z from that class's sampler)
 * with latents -> {data: Float32Array, shape: [n, D]}; n must be an integer in [1, MAX_BATCH] (1024, the bound of
 * the SavedModel sample signature) and seed an integer in [0, 2^32), else a DecoderError before anything is drawn.
 */
async function loadSampler(samplerPath, latentDim) {
  if (samplerPath === null) {
    return { kind: 'prior', latentDim, path: null, numClasses: 0,
      async latents(n, seed, temperature = 1) { return { data: checkLatentRange(scaled(drawNoise(n, seed, latentDim).eps, temperature)), shape: [n, latentDim] }; } };
  }
  if (!fs.existsSync(samplerPath)) throw new DecoderError(`sampler file not found: ${samplerPath}`);
  verifyListed(samplerPath);
  let session;
  try {
    session = await ort.InferenceSession.create(samplerPath, { executionProviders: ['cpu'] });
  } catch (err) {
    throw new DecoderError(`onnxruntime-node cannot load ${samplerPath}: ${err.message}`);
  }
  const numClasses = graphClasses(samplerPath, session);
  const names = [...session.inputNames].sort().join(',');
  if (names !== (numClasses ? 'eps,label,u' : 'eps,u') || session.outputNames.join(',') !== 'z') {
    throw new DecoderError(`${samplerPath} must map inputs eps, u${numClasses ? ', label' : ''} to output z (has ${session.inputNames} -> ${session.outputNames})`);
  }
  const eps = session.inputMetadata.find((m) => m.name === 'eps');
  if (Number(eps.shape[1]) !== latentDim) {
    throw new DecoderError(`${samplerPath} draws latents of size ${eps.shape[1]}, the decoder expects ${latentDim}`);
  }
  checkSamplerJson(samplerPath, latentDim);
  if (numClasses) {
    const classesFile = path.join(path.dirname(samplerPath), 'class_samplers.json');
    checkListedPresent(path.dirname(samplerPath), 'class_samplers.json', 'or pass --sampler prior to sample N(0, I) on purpose');
    if (fs.existsSync(classesFile)) verifyListed(classesFile);
  }
  return {
    kind: 'sampler', latentDim, path: samplerPath, numClasses,
    async latents(n, seed, temperature = 1, label = undefined) {
      const labels = checkLabels(label, checkCountOrThrow(n), numClasses);
      const noise = drawNoise(n, seed, latentDim);
      const feeds = { eps: new ort.Tensor('float32', scaled(noise.eps, temperature), [n, latentDim]),
        u: new ort.Tensor('float32', noise.u, [n]) };
      if (labels) feeds.label = new ort.Tensor('int32', labels, [n]);
      const out = await session.run(feeds);
      return { data: checkLatentRange(out.z.data), shape: [n, latentDim] };
    },
  };
}

function checkCountOrThrow(n) {
  try {
    return checkCount(n);
  } catch (err) {
    throw new DecoderError(err.message);
  }
}

/** The portable noise of n samples, the bounds on n and seed checked first (DecoderError naming the input). */
function drawNoise(n, seed, latentDim) {
  try {
    return portableNoise(checkSeed(seed), checkCount(n), latentDim);
  } catch (err) {
    throw new DecoderError(err.message);
  }
}

function scaled(eps, temperature) {
  if (!(Number.isFinite(temperature) && temperature >= 0)) throw new DecoderError(`temperature must be a finite number >= 0, got ${temperature}`);
  return temperature === 1 ? eps : eps.map((v) => v * temperature);
}

/**
 * The sampler beside a decoder: <folder of modelPath>/sampler.onnx when it exists, else null (the prior); a
 * DecoderError when the export.json there lists sampler.onnx but it is missing (never the prior instead).
 */
function defaultSamplerPath(modelPath) {
  const p = path.join(path.dirname(modelPath), 'sampler.onnx');
  if (fs.existsSync(p)) return p;
  checkListedPresent(path.dirname(modelPath), 'sampler.onnx', 'or pass --sampler prior to sample the prior N(0, I) on purpose');
  return null;
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

module.exports = { loadDecoder, loadSampler, defaultSamplerPath, decode, toBatch, toByte, pngBuffer, DecoderError, NOISE_ALGORITHM,
  verifyListed, checkListedPresent, checkLatentRange, checkLabels, MAX_BATCH };
