// Drive the latent explorer in headless Chromium (playwright-core + the system chromium; never
// `npx playwright install`). Prints one JSON object on stdout.
//
//   node serving/web/drive.mjs --url URL [--screenshot out.png] [--bench-repeats 20] [--bench-batches 1,64]
//                              [--timeout-ms 30000] [--interact] [--attribute A-B:ALPHA] [--pick-class K]
//
// Waits until <body data-state> is "ready" or "error", then reports {state, status, result (parsed
// <pre id="result">), load_ms, sampler ("sampler.onnx" | "prior"), last_sample ({seed, z} of the grid), console
// (errors/warnings), bench?: {batch<B>_ms: [...] for each B of --bench-batches (default 1,64)},
// interact?: {..., last_sample after "New sample"},
// attribute?: {labels, edited: {z, image} of the first grid code after choosing a, b and moving the strength slider to
// ALPHA in the page's controls, class_mean: {z} after pressing "Go to class mean a"}},
// num_classes and picker_visible (the class picker of a conditional export),
// pick_class?: {last_sample ({seed, label, z}), image ({dims, data} of the grid's codes decoded with that class)} after
// choosing class K in the picker.
// CHROMIUM=/path overrides /usr/bin/chromium.
import { chromium } from 'playwright-core';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const url = arg('url');
if (!url) {
  console.error('usage: node drive.mjs --url URL [--screenshot PNG] [--bench-repeats N] [--timeout-ms MS]');
  process.exit(2);
}
const timeout = Number(arg('timeout-ms', '30000'));
const repeats = Number(arg('bench-repeats', '0'));
const screenshot = arg('screenshot');
const benchBatches = arg('bench-batches', '1,64').split(',').map(Number);

const t0 = Date.now();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const report = { console: [] };
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') report.console.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => report.console.push(`pageerror: ${e.message}`));
  const tNav = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, { timeout });
  report.page_ready_ms = Date.now() - tNav;
  report.launch_ms = tNav - t0;
  report.state = await page.evaluate(() => document.body.dataset.state);
  report.status = await page.textContent('#status');
  const text = await page.textContent('#result');
  report.result = text ? JSON.parse(text) : null;
  if (report.state === 'ready') {
    report.load_ms = await page.evaluate(() => window.__kerasVaeTest.loadMs);
    report.sampler = await page.evaluate(() => window.__kerasVaeTest.samplerKind);
    report.last_sample = await page.evaluate(() => window.__kerasVaeTest.lastSample()); // {seed, label, z} of the grid
    report.num_classes = await page.evaluate(() => window.__kerasVaeTest.numClasses);
    report.picker_visible = await page.evaluate(() => !document.querySelector('#class-picker').hidden);
    if (repeats > 0) {
      report.bench = {};
      for (const b of benchBatches) {
        report.bench[`batch${b}_ms`] = await page.evaluate(([n, r]) => window.__kerasVaeTest.bench(n, r), [b, repeats]);
      }
    }
  }
  if (report.state === 'ready' && process.argv.includes('--interact')) {
    // Move slider z[0] and press "New sample": both must change what is drawn.
    const pixels = (sel) => page.evaluate((s) => document.querySelector(s).toDataURL(), sel);
    const cur0 = await pixels('#current');
    const grid0 = await pixels('#grid canvas');
    await page.evaluate(() => {
      const input = document.querySelector('#sliders input');
      input.value = Number(input.value) > 0 ? -2.5 : 2.5;
      input.dispatchEvent(new Event('input'));
    });
    await page.waitForFunction((c) => document.querySelector('#current').toDataURL() !== c, cur0, { timeout: 5000 }).catch(() => {});
    const cur1 = await pixels('#current');
    await page.click('#new-sample');
    await page.waitForFunction((g) => document.querySelector('#grid canvas').toDataURL() !== g, grid0, { timeout: 5000 }).catch(() => {});
    report.interact = { slider_changed_current: cur1 !== cur0, new_sample_changed_grid: (await pixels('#grid canvas')) !== grid0,
      last_sample: await page.evaluate(() => window.__kerasVaeTest.lastSample()) };
  }
  const attribute = arg('attribute');
  if (report.state === 'ready' && attribute) {
    const m = /^(\d+)-(\d+):(.+)$/.exec(attribute);
    if (!m) throw new Error(`--attribute must be A-B:ALPHA, got ${attribute}`);
    const labels = await page.evaluate(() => window.__kerasVaeTest.attributes());
    const visible = await page.evaluate(() => !document.querySelector('#attributes').hidden);
    report.attribute = { labels, controls_visible: visible };
    if (labels) {
      await page.selectOption('#attr-a', m[1]);
      await page.selectOption('#attr-b', m[2]);
      const cur0 = await page.evaluate(() => document.querySelector('#current').toDataURL());
      await page.evaluate((alpha) => {
        const input = document.querySelector('#attr-alpha');
        input.value = alpha;
        input.dispatchEvent(new Event('input'));
      }, m[3]);
      await page.waitForFunction((c) => document.querySelector('#current').toDataURL() !== c, cur0, { timeout: 5000 }).catch(() => {});
      report.attribute.alpha = await page.evaluate(() => Number(document.querySelector('#attr-alpha').value));
      report.attribute.edited = await page.evaluate(() => window.__kerasVaeTest.current());
      await page.click('#class-mean');
      await page.waitForFunction(() => Number(document.querySelector('#attr-alpha').value) === 0, null, { timeout: 5000 }).catch(() => {});
      report.attribute.class_mean = { z: (await page.evaluate(() => window.__kerasVaeTest.current())).z };
    }
  }
  const pick = arg('pick-class');
  if (report.state === 'ready' && pick !== undefined) {
    const grid0 = await page.evaluate(() => document.querySelector('#grid canvas').toDataURL());
    await page.selectOption('#class', pick);
    await page.waitForFunction((k) => (window.__kerasVaeTest.lastSample() || {}).label === Number(k), pick, { timeout: 10000 });
    await page.waitForFunction((g) => document.querySelector('#grid canvas').toDataURL() !== g, grid0, { timeout: 5000 }).catch(() => {});
    const last = await page.evaluate(() => window.__kerasVaeTest.lastSample());
    const image = await page.evaluate(async (rows) => {
      const r = await window.__kerasVaeTest.decode(rows);
      return { dims: r.dims, data: Array.from(r.data) };
    }, last.z);
    report.pick_class = { last_sample: last, image };
  }
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + '\n');
