#!/usr/bin/env node
'use strict';
// keras-vae-decode: decode latents from a file with decoder.onnx and write one PNG per image.
//
//   node decode.js --model decoder.onnx --latents z.json|z.bin --out-dir DIR [--float-out images.bin|images.json]
//   node decode.js --model decoder.onnx --sample N --seed S --out-dir DIR [--sampler sampler.onnx|prior]   (N <= 1024)
//                  [--temperature T] [--latents-out z.json] [--float-out ...]
//   either form also takes  --attribute A-B:ALPHA [--attributes attributes.json]
//   and, for a class-conditional export, --class K (required there, refused elsewhere)
//
// --sample draws N latents from the exported sampler (default: sampler.onnx beside the model, else the
// prior N(0, I)) with the portable noise of noise.js: the latents `keras-vae sample` and OnnxDecoder.sample
// give for the same seed. --latents-out writes them as JSON [[z_0 ... z_{D-1}], ...].
//
// --class K (a class-conditional export, export.json "conditional"): every image is decoded with label K, and
// --sample draws its latents from class K's sampler (sampler.onnx takes the label): the latents and images
// OnnxDecoder.sample(n, seed, label=K) and the SavedModel sample signature (label K) give.
//
// --attribute A-B:ALPHA adds ALPHA * (mean[A] - mean[B]) to every latent before decoding (class labels A and B;
// attributes.js), with the per-class mean codes of attributes.json (default: beside the model, written by
// `keras-vae export` for runs with labels); --latents-out then holds the edited latents.
//
// Latent files:
//   z.json  a JSON array of arrays [[z_0 ... z_{D-1}], ...] (one flat array = one code).
//   z.bin   raw float32 little-endian, row-major [N, D]. The shape comes from a sidecar z.bin.json
//           {"shape": [N, D]} when present, else D is the model's latent size and N = bytes / (4 D).
// Output: DIR/image_0000.png, ... (grey for C=1, RGB for C=3); with --float-out, the float32 images
//   [N, H, W, C] as .bin (raw float32 LE + sidecar .bin.json {"shape", "dtype"}) or .json
//   ({"shape": [...], "data": [flat values]}). A JSON summary goes to stdout; errors to stderr (exit 2).
const fs = require('fs');
const path = require('path');
const { loadDecoder, loadSampler, defaultSamplerPath, pngBuffer, toBatch, DecoderError, verifyListed, checkLabels, MAX_BATCH } = require('./decoder.js');
const attributes = require('./attributes.js');

const USAGE = 'usage: node decode.js --model decoder.onnx (--latents z.json|z.bin | --sample N --seed S ' +
  '[--sampler sampler.onnx|prior] [--temperature T]) [--class K] [--attribute A-B:ALPHA [--attributes attributes.json]] ' +
  '[--latents-out z.json] --out-dir DIR [--float-out FILE.bin|FILE.json]';
const OPTIONS = ['--model', '--latents', '--out-dir', '--float-out', '--sample', '--seed', '--sampler', '--temperature',
  '--latents-out', '--attribute', '--attributes', '--class'];

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    if (key === '-h' || key === '--help') { console.log(USAGE); process.exit(0); }
    if (!OPTIONS.includes(key) || i + 1 >= argv.length) {
      throw new DecoderError(`unknown or incomplete option ${key}\n${USAGE}`);
    }
    args[key.slice(2).replace('-', '_')] = argv[++i];
  }
  if (!args.model) throw new DecoderError(`missing --model\n${USAGE}`);
  if (!args.latents && !args.sample) throw new DecoderError(`missing --latents (or --sample N --seed S)\n${USAGE}`);
  if (args.latents && args.sample) throw new DecoderError(`pass either --latents or --sample, not both\n${USAGE}`);
  if (!args.out_dir) throw new DecoderError(`missing --out-dir\n${USAGE}`);
  if (args.sample) {
    for (const [k, min, max, why] of [['sample', 1, MAX_BATCH, 'images per run'], ['seed', 0, 4294967295, 'seeds are < 2^32']]) {
      if (args[k] === undefined || !/^\d+$/.test(args[k]) || Number(args[k]) < min || Number(args[k]) > max) {
        throw new DecoderError(`--${k} must be an integer >= ${min} and <= ${max} (${why}), got ${args[k]}`);
      }
    }
  }
  if (args.class !== undefined && !/^\d+$/.test(args.class)) {
    throw new DecoderError(`--class must be an integer >= 0 (a class of a conditional export), got ${args.class}`);
  }
  if (args.attributes && !args.attribute) throw new DecoderError(`--attributes needs --attribute A-B:ALPHA\n${USAGE}`);
  if (args.attribute) {
    try {
      args.edit = attributes.parseSpec(args.attribute);
    } catch (err) {
      throw new DecoderError(err.message);
    }
  }
  return args;
}

/** The checked attribute table: --attributes FILE, else attributes.json beside the model. */
function loadAttributes(file, modelPath, latentDim) {
  const p = file || path.join(path.dirname(modelPath), 'attributes.json');
  if (!fs.existsSync(p)) {
    throw new DecoderError(`attribute file not found: ${p} (exports of runs with labels have one; pass --attributes FILE)`);
  }
  verifyListed(p); // listed in the export.json beside it: must match
  try {
    return { path: p, table: attributes.checkTable(JSON.parse(fs.readFileSync(p, 'utf8')), latentDim, p) };
  } catch (err) {
    throw new DecoderError(err instanceof SyntaxError ? `${p} is not valid JSON: ${err.message}` : err.message);
  }
}

/** Read a .json or .bin latent file -> array of arrays or {data, shape}. */
function readLatents(file, latentDim) {
  if (!fs.existsSync(file)) throw new DecoderError(`latent file not found: ${file}`);
  if (file.endsWith('.json')) {
    try {
      return JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new DecoderError(`${file} is not valid JSON: ${err.message}`);
    }
  }
  if (file.endsWith('.bin')) {
    const buf = fs.readFileSync(file);
    if (buf.length % 4) throw new DecoderError(`${file}: ${buf.length} bytes is not a whole number of float32 values`);
    const data = new Float32Array(buf.length / 4);
    for (let i = 0; i < data.length; i++) data[i] = buf.readFloatLE(4 * i);
    const sidecar = `${file}.json`;
    let shape;
    if (fs.existsSync(sidecar)) {
      shape = JSON.parse(fs.readFileSync(sidecar, 'utf8')).shape;
    } else {
      if (data.length % latentDim) throw new DecoderError(`${file}: ${data.length} values is not a multiple of the latent size ${latentDim}`);
      shape = [data.length / latentDim, latentDim];
    }
    return { data, shape };
  }
  throw new DecoderError(`${file}: latent file must end in .json or .bin`);
}

function writeFloat(file, result) {
  if (file.endsWith('.json')) {
    fs.writeFileSync(file, JSON.stringify({ shape: result.dims, data: Array.from(result.data) }));
  } else if (file.endsWith('.bin')) {
    const buf = Buffer.alloc(result.data.length * 4);
    result.data.forEach((v, i) => buf.writeFloatLE(v, 4 * i));
    fs.writeFileSync(file, buf);
    fs.writeFileSync(`${file}.json`, JSON.stringify({ shape: result.dims, dtype: 'float32', byte_order: 'little' }));
  } else {
    throw new DecoderError(`--float-out must end in .bin or .json: ${file}`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const t0 = process.hrtime.bigint();
  const decoder = await loadDecoder(args.model);
  const t1 = process.hrtime.bigint();
  const label = args.class === undefined ? undefined : Number(args.class);
  checkLabels(label, 1, decoder.numClasses); // a missing, extra or out-of-range --class: before anything is drawn
  const attr = args.edit ? loadAttributes(args.attributes, args.model, decoder.latentDim) : null;
  let latents;
  let sampler = null;
  if (args.sample) {
    const samplerPath = args.sampler === 'prior' ? null : (args.sampler || defaultSamplerPath(args.model));
    sampler = await loadSampler(samplerPath, decoder.latentDim);
    latents = await sampler.latents(Number(args.sample), Number(args.seed), Number(args.temperature || 1),
      sampler.numClasses ? label : undefined);
  } else {
    latents = readLatents(args.latents, decoder.latentDim);
  }
  if (attr) {
    const batch = toBatch(latents, decoder.latentDim);
    try {
      latents = { data: attributes.editBatch(attr.table, batch.data, decoder.latentDim, args.edit.a, args.edit.b, args.edit.alpha),
        shape: batch.shape };
    } catch (err) {
      throw new DecoderError(err.message);
    }
  }
  if (args.latents_out) {
    const batch = toBatch(latents, decoder.latentDim);
    const rows = Array.from({ length: batch.shape[0] }, (_, i) =>
      Array.from(batch.data.subarray(i * batch.shape[1], (i + 1) * batch.shape[1])));
    fs.writeFileSync(args.latents_out, JSON.stringify(rows));
  }
  const t2 = process.hrtime.bigint();
  const result = await decoder.decode(latents, label);
  const t3 = process.hrtime.bigint();
  fs.mkdirSync(args.out_dir, { recursive: true });
  const pngs = [];
  for (let i = 0; i < result.dims[0]; i++) {
    const file = path.join(args.out_dir, `image_${String(i).padStart(4, '0')}.png`);
    fs.writeFileSync(file, pngBuffer(result, i));
    pngs.push(file);
  }
  if (args.float_out) writeFloat(args.float_out, result);
  const ms = (a, b) => Number(b - a) / 1e6;
  console.log(JSON.stringify({ model: args.model, shape: result.dims, pngs, float_out: args.float_out || null,
    sampler: sampler ? (sampler.path || 'prior') : null, seed: args.sample ? Number(args.seed) : null,
    class: label === undefined ? null : label,
    attribute: attr ? { ...args.edit, file: attr.path } : null,
    load_ms: ms(t0, t1), decode_ms: ms(t2, t3) }));
}

main().catch((err) => {
  console.error(`keras-vae-decode: error: ${err instanceof DecoderError ? err.message : err.stack}`);
  process.exit(2);
});
