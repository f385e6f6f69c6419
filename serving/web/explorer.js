// keras-vae latent explorer: decodes latents with decoder.onnx in the browser (onnxruntime-web, WASM).
//
// Query string (all optional):
//   model=URL   the decoder (default ./decoder.onnx)
//   sampler=URL the latent sampler; default: sampler.onnx beside the model when the export.json there lists it,
//               else the prior N(0, I) (also with sampler=prior)
//   attributes=URL  per-class mean codes (default: attributes.json beside the model when its export.json lists it;
//               attributes=none hides the attribute controls)
//   ort=URL     folder with onnxruntime-web's dist files (default ./node_modules/onnxruntime-web/dist/)
//   seed=INT    seed of the sample grid and the interpolation end points, in [0, 2^32) (default: time based)
//   n=INT       number of samples in the grid, in [1, 256] (default 16); a value outside is an error, not clamped
//   class=INT   a class-conditional export's class (default 0): the grid draws from that class's sampler and every
//               image is decoded with that label; a picker beside "New sample" changes it (shown only for such an
//               export, whose export.json has "conditional"; an unconditional export refuses the parameter)
//   z=JSON      latents [[...], ...] to decode once; the result goes to <pre id="result"> as JSON
//               {"dims": [N, H, W, C], "data": [flat float32 values], "load_ms": t, "decode_ms": t}
// Tests and benchmarks may also call window.__kerasVaeTest.decode(rows[, label]) / .sample(n, seed[, label]) /
// .bench(batch, repeats), read .numClasses and .lastSample() = {seed, label, z: [[...], ...]} (the codes of the grid on
// screen; label null for an unconditional export), .current() = {z, image} (the
// selected code as drawn, after any attribute edit, and its decoded image {dims, data}) and .attributes() (the labels
// of attributes.json, or null).
// Attribute vectors (attributes.js, window.kerasVaeAttributes): the selected grid code is the base b0; the panel shows
// edit(b0; a, b, alpha) = b0 + alpha (mean[a] - mean[b]) as Python's AttributeTable.edit computes it. "Go to class
// mean a" makes mean[a] the base; moving a z[d] slider first keeps the edited code as the new base (alpha back to 0).
// Contract (export/contract.py): input "z" float32 [N, D], output "image" float32 [N, H, W, C] in [0, 1];
// sampler.onnx: "eps" float32 [N, D], "u" float32 [N] -> "z" float32 [N, D]. The noise comes from noise.js
// (window.kerasVaeNoise, the portable noise of keras_vae/sampling/noise.py), so grid seed S shows the latents that
// `keras-vae sample --seed S` and OnnxDecoder.sample(n, S) decode.
// export.json (beside the model): every file it lists that the page loads (decoder.onnx, sampler.onnx,
// attributes.json) must be served and match its recorded size and SHA-256 (crypto.subtle: 127.0.0.1/localhost or
// https; elsewhere only the size is checked); a listed file that is missing or altered is an error, never a fallback.

const params = new URLSearchParams(location.search);
const MODEL_URL = params.get('model') || './decoder.onnx';
const SAMPLER_PARAM = params.get('sampler');
const ATTRIBUTES_PARAM = params.get('attributes');
const ORT_BASE = new URL(params.get('ort') || './node_modules/onnxruntime-web/dist/', location.href).href;
const MAX_GRID = 256; // ?n= (checked in main(), so that a bad value shows on the page)
const N_SLIDERS = 8;
const STRIP_STEPS = 10;

const $ = (id) => document.getElementById(id);
const state = { ort: null, session: null, sampler: null, samplerKind: 'prior', latentDim: 0, imageShape: null, seed: 0, grid: 16,
  current: null, base: null, attributes: null, codes: null, queue: Promise.resolve(),
  numClasses: 0, samplerLabels: false, label: null };

function setStatus(text, s) {
  $('status').textContent = text;
  if (s) document.body.dataset.state = s;
}

// One session.run at a time (decoder and sampler share the WASM runtime).
function enqueue(run) {
  const p = state.queue.then(run, run);
  state.queue = p.catch(() => {});
  return p;
}

// Latents and their squares must stay finite in float32 (keras_vae/sampling/samplers.py LATENT_LIMIT).
const LATENT_LIMIT = Math.sqrt(3.4028234663852886e38);

// The "files" table of export.json beside the model (null when the server has none), fetched once.
let manifestPromise = null;
function manifestFiles() {
  if (!manifestPromise) {
    manifestPromise = (async () => {
      const url = new URL('export.json', new URL(MODEL_URL, location.href));
      const resp = await fetch(url).catch(() => null);
      if (!resp || !resp.ok) return null;
      const manifest = await resp.json().catch(() => { throw new Error(`${url} is not valid JSON: re-export the model`); });
      const files = manifest.files;
      if (!files || typeof files !== 'object') throw new Error(`${url} has no "files" table: re-export the model`);
      return { base: new URL('./', url).href, files, conditional: manifest.conditional || null };
    })();
  }
  return manifestPromise;
}

// The bytes of `url`; when export.json lists the file, a missing or altered file is an error naming the field.
async function fetchVerified(url) {
  const href = new URL(url, location.href).href;
  const manifest = await manifestFiles();
  const name = manifest && href.startsWith(manifest.base) ? href.slice(manifest.base.length) : null;
  const entry = name && Object.prototype.hasOwnProperty.call(manifest.files, name) ? manifest.files[name] : null;
  const resp = await fetch(href).catch((err) => { throw new Error(`${href}: ${err.message}`); });
  if (!resp.ok) {
    throw new Error(`${href}: HTTP ${resp.status}` + (entry ? ' but export.json lists it: the export is incomplete; re-export it' : ''));
  }
  const bytes = new Uint8Array(await resp.arrayBuffer());
  if (!entry) return bytes;
  if (typeof entry.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(entry.sha256)) {
    throw new Error(`export.json: files["${name}"].sha256 must be 64 lower-case hex digits, got ${JSON.stringify(entry.sha256)}: re-export the model`);
  }
  if (entry.bytes !== undefined && entry.bytes !== null && !(Number.isSafeInteger(entry.bytes) && entry.bytes >= 0)) {
    throw new Error(`export.json: files["${name}"].bytes must be an integer >= 0, got ${typeof entry.bytes} ${JSON.stringify(entry.bytes)}: re-export the model`);
  }
  const differs = [];
  if (entry.bytes !== undefined && entry.bytes !== null && bytes.length !== entry.bytes) differs.push(`size ${bytes.length} bytes, recorded ${entry.bytes}`);
  if (window.crypto && window.crypto.subtle) {
    const digest = new Uint8Array(await window.crypto.subtle.digest('SHA-256', bytes));
    const sha = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
    if (sha !== entry.sha256) differs.push(`sha256 ${sha.slice(0, 16)}..., recorded ${entry.sha256.slice(0, 16)}...`);
  } else {
    console.warn(`${name}: no crypto.subtle on this origin (not https or localhost): only its size was checked`);
  }
  if (differs.length) throw new Error(`${href} does not match export.json: ${differs.join('; ')}; the file was changed or is corrupt: re-export it`);
  return bytes;
}

function checkLatentRange(flat) {
  const i = flat.findIndex((v) => !(Math.abs(v) <= LATENT_LIMIT));
  if (i >= 0) throw new Error(`the drawn latents reach ${flat[i]} at flat index ${i}, beyond what float32 decodes (|z| <= ${LATENT_LIMIT.toPrecision(3)})`);
  return flat;
}

// n codes (Float32Array rows of length D) of the exported sampler for a seed in [0, 2^32): portable noise
// (noise.js) -> sampler.onnx, or the noise itself (the prior N(0, I)) when there is no sampler. n must be an
// integer in [1, 1024] (noise.js MAX_BATCH, the bound of the SavedModel sample signature) and the seed an
// integer in [0, 2^32): anything else is a RangeError naming it, before anything is drawn.
// A conditional export's sampler.onnx also takes the class: the codes come from that class's sampler.
function sampleCodes(n, seed, label = state.label) {
  const D = state.latentDim;
  const noise = window.kerasVaeNoise;
  const { eps, u } = noise.portableNoise(noise.checkSeed(seed), noise.checkCount(n), D);
  const labels = state.samplerLabels ? labelTensor(label, n) : null;
  const rows = (flat) => Array.from({ length: n }, (_, i) => Float32Array.from(flat.subarray(i * D, (i + 1) * D)));
  if (!state.sampler) return Promise.resolve(rows(eps));
  return enqueue(async () => {
    const feeds = { eps: new state.ort.Tensor('float32', eps, [n, D]), u: new state.ort.Tensor('float32', u, [n]) };
    if (labels) feeds.label = labels;
    const out = await state.sampler.run(feeds);
    return rows(checkLatentRange(out.z.data));
  });
}

// int32 labels [n] of one class: an Error unless it is an integer in [0, numClasses) of a conditional export.
function labelTensor(label, n) {
  if (!state.numClasses) {
    if (label !== null && label !== undefined) throw new Error('this export is not class-conditional (it takes no label)');
    return null;
  }
  if (!(Number.isInteger(label) && label >= 0 && label < state.numClasses)) {
    throw new Error(`class must be an integer in [0, ${state.numClasses}), got ${JSON.stringify(label)}`);
  }
  return new state.ort.Tensor('int32', new Int32Array(n).fill(label), [n]);
}

// Decode rows (arrays of length D) -> {dims, data} (with the class `label` for a conditional export); runs are
// queued (one session.run at a time).
function decode(rows, label = state.label) {
  const labels = labelTensor(label, rows.length);
  const run = async () => {
    const D = state.latentDim;
    const flat = new Float32Array(rows.length * D);
    rows.forEach((r, i) => {
      if (r.length !== D) throw new Error(`latent ${i} has length ${r.length}, the decoder expects ${D}`);
      flat.set(r, i * D);
    });
    const feeds = { z: new state.ort.Tensor('float32', flat, [rows.length, D]) };
    if (labels) feeds.label = labels;
    const out = await state.session.run(feeds);
    return { dims: out.image.dims.slice(), data: out.image.data };
  };
  return enqueue(run);
}

// float in [0, 1] -> uint8 with the same rule as keras_vae/utils/images.py: floor(clip(x, 0, 1) * 255 + 0.5)
const toByte = (x) => Math.floor(Math.min(1, Math.max(0, x)) * 255 + 0.5);

function draw(canvas, result, index) {
  const [, H, W, C] = result.dims;
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(W, H);
  const base = index * H * W * C;
  for (let p = 0; p < H * W; p++) {
    const src = base + p * C;
    const v0 = toByte(result.data[src]);
    img.data[4 * p] = v0;
    img.data[4 * p + 1] = C >= 3 ? toByte(result.data[src + 1]) : v0;
    img.data[4 * p + 2] = C >= 3 ? toByte(result.data[src + 2]) : v0;
    img.data[4 * p + 3] = C === 4 ? toByte(result.data[src + 3]) : 255;
  }
  ctx.putImageData(img, 0, 0);
}

function canvases(container, n) {
  container.replaceChildren(...Array.from({ length: n }, () => document.createElement('canvas')));
  return [...container.children];
}

async function drawCurrent() {
  draw($('current'), await decode([state.current]), 0);
}

// The attribute controls' (a, b, alpha).
function attributeChoice() {
  return { a: Number($('attr-a').value), b: Number($('attr-b').value), alpha: Number($('attr-alpha').value) };
}

// current = base + alpha (mean[a] - mean[b]) (the base itself without a table or at alpha 0).
function applyAttribute() {
  const { a, b, alpha } = attributeChoice();
  state.current = state.attributes && alpha !== 0
    ? window.kerasVaeAttributes.editCode(state.attributes, state.base, a, b, alpha) : Float32Array.from(state.base);
  $('attr-alpha-value').textContent = alpha.toFixed(2);
}

function setAlpha(alpha) {
  $('attr-alpha').value = alpha;
  $('attr-alpha-value').textContent = Number(alpha).toFixed(2);
}

// Make `code` the base (alpha back to 0) and draw it.
function selectCode(code) {
  state.base = Float32Array.from(code);
  setAlpha(0);
  applyAttribute();
  syncSliders();
  return drawCurrent();
}

function redrawEdit() {
  applyAttribute();
  syncSliders();
  return drawCurrent();
}

function buildAttributes() {
  const table = state.attributes;
  $('attributes').hidden = !table;
  if (!table) return;
  for (const [id, pick] of [['attr-a', 0], ['attr-b', 1]]) {
    const select = $(id);
    select.replaceChildren(...table.labels.map((label, i) => {
      const option = document.createElement('option');
      option.value = label;
      option.textContent = `${label} (${table.counts[i]} codes)`;
      return option;
    }));
    select.value = table.labels[Math.min(pick, table.labels.length - 1)];
    select.addEventListener('change', () => redrawEdit().catch(fail));
  }
  $('attr-alpha').addEventListener('input', () => redrawEdit().catch(fail));
  $('class-mean').addEventListener('click', () =>
    selectCode(window.kerasVaeAttributes.classMean(table, attributeChoice().a)).catch(fail));
  const fitted = table.fittedOn;
  $('attr-info').textContent = `class means of ${fitted.examples || '?'} ${fitted.split || ''} codes of ${fitted.source || 'the run\'s data'}`;
}

function buildSliders() {
  const box = $('sliders');
  box.replaceChildren();
  for (let d = 0; d < Math.min(N_SLIDERS, state.latentDim); d++) {
    const label = document.createElement('label');
    label.innerHTML = `<span>z[${d}]</span><input type="range" min="-3" max="3" step="0.05"><output></output>`;
    const input = label.querySelector('input');
    input.dataset.dim = d;
    input.addEventListener('input', () => {
      if (Number($('attr-alpha').value) !== 0) { // keep the edited code as the new base
        state.base = Float32Array.from(state.current);
        setAlpha(0);
      }
      state.base[d] = parseFloat(input.value);
      state.current = Float32Array.from(state.base);
      label.querySelector('output').textContent = Number(input.value).toFixed(2);
      drawCurrent();
    });
    box.appendChild(label);
  }
}

function syncSliders() {
  for (const input of $('sliders').querySelectorAll('input')) {
    const d = Number(input.dataset.dim);
    input.value = state.current[d];
    input.nextElementSibling.textContent = state.current[d].toFixed(2);
  }
}

async function newSample() {
  state.seed = (state.seed + 1) >>> 0;
  return drawSample();
}

// The grid, the selected code and the strip of state.seed (and the chosen class).
async function drawSample() {
  const seed = state.seed;
  const codes = await sampleCodes(state.grid, seed);
  state.codes = { seed, label: state.label, z: codes.map((r) => Array.from(r)) };
  const grid = await decode(codes);
  canvases($('grid'), state.grid).forEach((c, i) => {
    draw(c, grid, i);
    c.title = `sample ${i} (seed ${state.seed})`;
    c.addEventListener('click', () => {
      $('grid').querySelectorAll('canvas').forEach((o) => o.classList.remove('selected'));
      c.classList.add('selected');
      selectCode(codes[i]).catch(fail);
    });
  });
  $('grid').firstChild.classList.add('selected');
  await selectCode(codes[0]);
  const [z0, z1] = await sampleCodes(2, (seed ^ 0x9E3779B9) >>> 0);
  const rows = Array.from({ length: STRIP_STEPS }, (_, k) => {
    const a = k / (STRIP_STEPS - 1);
    return z0.map((v, j) => (1 - a) * v + a * z1[j]);
  });
  const strip = await decode(rows);
  canvases($('strip'), STRIP_STEPS).forEach((c, i) => draw(c, strip, i));
}

async function bench(batch, repeats) {
  const rows = await sampleCodes(batch, 12345);
  await decode(rows); // warm-up
  const times = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await decode(rows);
    times.push(performance.now() - t0);
  }
  return times;
}

// A file beside the model when its export.json lists it, else null.
async function listedBeside(name) {
  const manifest = await manifestFiles();
  return manifest && Object.prototype.hasOwnProperty.call(manifest.files, name) ? manifest.base + name : null;
}

// The sampler to use: ?sampler=URL, else sampler.onnx beside the model when its export.json lists it, else null.
async function samplerUrl() {
  if (SAMPLER_PARAM) return SAMPLER_PARAM === 'prior' ? null : SAMPLER_PARAM;
  return listedBeside('sampler.onnx');
}

// The per-class mean codes: ?attributes=URL, else attributes.json when export.json lists it (none: no controls).
// A listed table that cannot be read is an error, as for the sampler.
async function loadAttributes() {
  const url = ATTRIBUTES_PARAM ? (ATTRIBUTES_PARAM === 'none' ? null : ATTRIBUTES_PARAM) : await listedBeside('attributes.json');
  if (!url) return;
  const text = new TextDecoder().decode(await fetchVerified(url));
  state.attributes = window.kerasVaeAttributes.checkTable(JSON.parse(text), state.latentDim, url);
}

// Load the sampler (a listed sampler that fails to load is an error, not a silent fallback to the prior).
async function loadSampler() {
  const url = await samplerUrl();
  if (url) {
    state.sampler = await state.ort.InferenceSession.create(await fetchVerified(url), { executionProviders: ['wasm'] });
    state.samplerLabels = state.sampler.inputNames.includes('label');
    if (state.samplerLabels && !state.numClasses) throw new Error(`${url} takes a class label but the decoder does not: re-export the model`);
    const names = [...state.sampler.inputNames].sort().join(',');
    if (names !== (state.samplerLabels ? 'eps,label,u' : 'eps,u') || state.sampler.outputNames.join(',') !== 'z') {
      throw new Error(`${url} must map inputs eps, u${state.numClasses ? ', label' : ''} to output z (has ${state.sampler.inputNames} -> ${state.sampler.outputNames})`);
    }
    state.samplerKind = 'sampler.onnx';
  }
  $('sampler-kind').textContent = state.sampler ? 'the exported sampler (sampler.onnx)' : 'the prior z ~ N(0, I)';
}

// A conditional export (decoder input "label"): the class count from export.json "conditional", the class from
// ?class= (default 0), and the picker beside "New sample" (hidden for an unconditional export).
async function loadClasses() {
  const takesLabel = state.session.inputNames.includes('label');
  const manifest = await manifestFiles();
  const classes = manifest && manifest.conditional ? manifest.conditional.num_classes : 0;
  if (takesLabel && !(Number.isSafeInteger(classes) && classes > 0)) {
    throw new Error(`${MODEL_URL} takes a class label, and export.json beside it names no "conditional.num_classes": serve the whole export folder`);
  }
  state.numClasses = takesLabel ? classes : 0;
  if (!state.numClasses) {
    if (params.has('class')) throw new Error('class: this export is not class-conditional (it takes no label): drop ?class=');
    return;
  }
  state.label = integerParam('class', params.get('class') || '0', 0, state.numClasses - 1);
  const select = $('class');
  select.replaceChildren(...Array.from({ length: state.numClasses }, (_, c) => {
    const option = document.createElement('option');
    option.value = String(c);
    option.textContent = String(c);
    return option;
  }));
  select.value = String(state.label);
  select.addEventListener('change', () => {
    state.label = Number(select.value);
    drawSample().catch(fail);
  });
  $('class-picker').hidden = false;
}

async function main() {
  const t0 = performance.now();
  state.grid = integerParam('n', params.get('n') || '16', 1, MAX_GRID);
  state.ort = await import(ORT_BASE + 'ort.wasm.bundle.min.mjs');
  state.ort.env.wasm.numThreads = 1; // threads need COOP/COEP headers; one thread works everywhere
  state.ort.env.wasm.wasmPaths = ORT_BASE;
  setStatus(`loading ${MODEL_URL} ...`);
  state.session = await state.ort.InferenceSession.create(await fetchVerified(MODEL_URL), { executionProviders: ['wasm'] });
  const loadMs = performance.now() - t0;
  const zMeta = (state.session.inputMetadata || []).find((m) => m.name === 'z');
  state.latentDim = Number(params.get('latent')) || (zMeta && zMeta.shape ? Number(zMeta.shape[1]) : NaN);
  if (!(state.latentDim > 0)) throw new Error(`${MODEL_URL}: cannot read the latent size of input "z"; pass ?latent=D`);
  if (!state.session.inputNames.includes('z') || !state.session.outputNames.includes('image')) {
    throw new Error(`${MODEL_URL} must have input "z" and output "image" (has ${state.session.inputNames} -> ${state.session.outputNames})`);
  }
  await loadClasses();
  await loadSampler();
  await loadAttributes();
  window.__kerasVaeTest = { decode, bench, loadMs, latentDim: state.latentDim, samplerKind: state.samplerKind,
    numClasses: state.numClasses,
    sample: async (n, seed, label) => (await sampleCodes(n, seed, label)).map((r) => Array.from(r)), lastSample: () => state.codes,
    attributes: () => (state.attributes ? state.attributes.labels : null),
    current: async () => {
      const z = Array.from(state.current);
      const r = await decode([state.current]);
      return { z, image: { dims: r.dims, data: Array.from(r.data) } };
    } };

  if (params.has('z')) {
    const rows = JSON.parse(params.get('z'));
    const t1 = performance.now();
    const r = await decode(rows);
    const decodeMs = performance.now() - t1;
    $('result').textContent = JSON.stringify({ dims: r.dims, data: Array.from(r.data), load_ms: loadMs, decode_ms: decodeMs });
  }

  state.seed = params.has('seed') ? integerParam('seed', params.get('seed'), 0, 4294967295) : Date.now() >>> 0;
  state.seed = (state.seed - 1) >>> 0; // newSample() advances it first
  buildSliders();
  buildAttributes();
  await newSample();
  const [, H, W, C] = (await decode([state.current])).dims;
  state.imageShape = [H, W, C];
  $('info').textContent = `latent ${state.latentDim}, image ${H}x${W}x${C}, model loaded in ${loadMs.toFixed(0)} ms, ` +
    `samples from ${state.sampler ? 'sampler.onnx' : 'the prior N(0, I)'}` +
    (state.numClasses ? `, ${state.numClasses} classes` : '');
  $('new-sample').disabled = false;
  $('new-sample').addEventListener('click', () => newSample().catch(fail));
  setStatus(`${MODEL_URL} (onnxruntime-web ${state.ort.env.versions.web}, wasm, 1 thread)`, 'ready');
}

// A query parameter that must be a whole number in [min, max] (an Error naming it otherwise).
function integerParam(name, text, min, max) {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) throw new Error(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(text)}`);
  return value;
}

function fail(err) {
  console.error(err);
  setStatus(`error: ${err && err.message ? err.message : err}`, 'error');
  $('result').textContent = JSON.stringify({ error: String(err && err.message ? err.message : err) });
}

main().catch(fail);
