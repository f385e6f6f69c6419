'use strict';
// Benchmark for benchmarks/bench_onnx_decoder.py: node bench.js MODEL REPEATS -> JSON on stdout
// {load_ms, batch1_ms: [...], batch64_ms: [...]} (session creation, then per-decode wall times).
const { loadDecoder } = require('./decoder.js');

async function main() {
  const [model, repeatsArg] = process.argv.slice(2);
  const repeats = Number(repeatsArg || 20);
  const t0 = process.hrtime.bigint();
  const dec = await loadDecoder(model);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const report = { load_ms: loadMs };
  for (const batch of [1, 64]) {
    const data = Float32Array.from({ length: batch * dec.latentDim }, (_, i) => Math.sin(i));
    await dec.decode({ data, shape: [batch, dec.latentDim] }); // warm-up
    const times = [];
    for (let r = 0; r < repeats; r++) {
      const t = process.hrtime.bigint();
      await dec.decode({ data, shape: [batch, dec.latentDim] });
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    report[`batch${batch}_ms`] = times;
  }
  console.log(JSON.stringify(report));
}

main().catch((err) => { console.error(err.stack); process.exit(1); });
