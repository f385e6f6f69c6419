// keras-vae attribute vectors: the JavaScript twin of keras_vae/applications/attributes.py.
//
// An export of a run with labels carries attributes.json: the mean posterior code of each class,
// {"format": "keras-vae-attributes", "format_version": 1, "latent_dim": D,
//  "classes": [{"label": 0, "count": n, "mean": [D numbers]}, ...]}.
//   edit(z; a, b, alpha) = z + alpha * (mean[a] - mean[b])
// evaluated in doubles on the JSON numbers (float32 values written exactly) and stored as float32: the
// expression and order Python uses, so Python, Node and the browser get the same latents bit for bit.
// "Go to class mean a" is mean[a] itself.
//
// Works in Node (require('./attributes.js')) and in the browser as a classic <script> (window.kerasVaeAttributes).
// No dependencies.
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.kerasVaeAttributes = factory();
}(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const FORMAT = 'keras-vae-attributes';
  const SPEC = /^(\d+)-(\d+):([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$/;

  class AttributeError extends Error {}

  /** Check a parsed attributes.json (against the decoder's latent size when given) -> {labels, counts, means, byLabel}. */
  function checkTable(table, latentDim, source = 'attributes.json') {
    const bad = (what) => new AttributeError(`${source} is not a keras-vae attribute table: ${what}`);
    if (!table || table.format !== FORMAT || table.format_version !== 1) throw bad(`"format" must be "${FORMAT}", version 1`);
    const D = table.latent_dim;
    if (latentDim !== undefined && latentDim !== null && D !== latentDim) {
      throw new AttributeError(`${source} has latent size ${D}, the decoder expects ${latentDim}: it belongs to another model`);
    }
    if (!Array.isArray(table.classes) || table.classes.length < 2) throw bad('"classes" must list at least two classes');
    const byLabel = new Map();
    for (const c of table.classes) {
      if (!c || !Number.isInteger(c.label) || !Number.isInteger(c.count) || c.count < 1) throw bad('every class needs an integer "label" and "count" >= 1');
      if (!Array.isArray(c.mean) || c.mean.length !== D || !c.mean.every((v) => typeof v === 'number' && Number.isFinite(v))) {
        throw bad(`the mean of class ${c.label} must be ${D} finite numbers`);
      }
      if (byLabel.has(c.label)) throw bad(`class ${c.label} is listed twice`);
      byLabel.set(c.label, c.mean);
    }
    return { latentDim: D, labels: [...byLabel.keys()], counts: table.classes.map((c) => c.count), byLabel, fittedOn: table.fitted_on || {} };
  }

  /** "a-b:alpha" (class labels a, b >= 0; alpha a finite number, may be negative) -> {a, b, alpha}. */
  function parseSpec(spec) {
    const m = SPEC.exec(String(spec).trim());
    const alpha = m ? Number(m[3]) : NaN;
    if (!m || !Number.isFinite(alpha)) {
      throw new AttributeError(`--attribute must look like A-B:ALPHA (class labels A and B, a finite strength), e.g. 7-1:1.5, got ${JSON.stringify(spec)}`);
    }
    return { a: Number(m[1]), b: Number(m[2]), alpha };
  }

  /** The stored mean of class `label` (an array of doubles); an error naming the classes there are otherwise. */
  function classMean(table, label) {
    const mean = table.byLabel.get(Number(label));
    if (!mean) throw new AttributeError(`no class ${label} in the attribute table (classes: ${table.labels.join(', ')})`);
    return mean;
  }

  /** Float32Array z + alpha * (mean[a] - mean[b]) for one code z (array-like of length D). */
  function editCode(table, z, a, b, alpha) {
    if (!Number.isFinite(alpha)) throw new AttributeError(`attribute strength must be a finite number, got ${alpha}`);
    const ma = classMean(table, a);
    const mb = classMean(table, b);
    if (z.length !== ma.length) throw new AttributeError(`code has length ${z.length}, the attribute table ${ma.length}`);
    const out = new Float32Array(z.length);
    for (let j = 0; j < z.length; j++) out[j] = z[j] + alpha * (ma[j] - mb[j]);
    return out;
  }

  /** The same edit on every row of a flat Float32Array [n, D] (row-major); returns a new Float32Array. */
  function editBatch(table, data, D, a, b, alpha) {
    const out = new Float32Array(data.length);
    for (let i = 0; i < data.length / D; i++) out.set(editCode(table, data.subarray(i * D, (i + 1) * D), a, b, alpha), i * D);
    return out;
  }

  return { FORMAT, AttributeError, checkTable, parseSpec, classMean, editCode, editBatch };
}));
