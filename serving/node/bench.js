'use strict';
// Benchmark for benchmarks/bench_onnx_decoder.py and benchmarks/js_speed.py:
//   node bench.js MODEL REPEATS [BATCHES]   (BATCHES: comma-separated, default "1,64")
// -> JSON on stdout {load_ms, batch<B>_ms: [...], batch<B>_cpu_ms: [...]} for each batch B: session
// creation time, then per-decode wall times and process CPU times (process.cpuUsage: user + system,
// every thread of the process) after one warm-up decode.
const { loadDecoder } = require('./decoder.js');

function cpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e3;
}

async function main() {
  const [model, repeatsArg, batchesArg] = process.argv.slice(2);
  const repeats = Number(repeatsArg || 20);
  const batches = (batchesArg || '1,64').split(',').map(Number);
  if (!model || !(repeats > 0) || batches.some((b) => !(Number.isInteger(b) && b > 0))) {
    console.error('usage: node bench.js MODEL REPEATS [BATCHES, e.g. 1,64]');
    process.exit(2);
  }
  const t0 = process.hrtime.bigint();
  const dec = await loadDecoder(model);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const report = { load_ms: loadMs };
  for (const batch of batches) {
    const data = Float32Array.from({ length: batch * dec.latentDim }, (_, i) => Math.sin(i));
    await dec.decode({ data, shape: [batch, dec.latentDim] }); // warm-up
    const times = [];
    const cpu = [];
    for (let r = 0; r < repeats; r++) {
      const t = process.hrtime.bigint();
      const c = cpuMs();
      await dec.decode({ data, shape: [batch, dec.latentDim] });
      cpu.push(cpuMs() - c);
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    report[`batch${batch}_ms`] = times;
    report[`batch${batch}_cpu_ms`] = cpu;
  }
  console.log(JSON.stringify(report));
}

main().catch((err) => { console.error(err.stack); process.exit(1); });
