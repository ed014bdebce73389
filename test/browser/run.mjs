/* global getComputedStyle */
// Browser test for the HTML report (npm run test:browser): renders sample reports with the built
// renderer (dist/), opens them in Debian's Chromium through playwright-core (no browser download),
// and checks what the browser laid out: each chart's geometry (bar heights and widths against the
// data, the throughput line's points against its values, a common baseline), the texts, and the
// colours the page's CSS paints. Then the experiment reports (multi-vm, policies) built from
// sample results by the real builders, at 1280 px wide: tables, legends, explanations and the
// page-owner map (see experiments.mjs).
//
//   npm run test:browser               build, then run
//   node test/browser/run.mjs --keep   keep the temp dir (the reports, chart PNGs, full-page PNGs
//                                      of the experiment reports at 1280 px)
//
// Ends with "browser: N passed, M failed"; exits 1 on any failure.

import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { checkReadable, multiVmResults, policyRows, tablesFit } from './experiments.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.BROWSER_TIMEOUT_MS || 90_000);
const KEEP = process.argv.includes('--keep') || process.env.KEEP_REPORT === '1';
const IDS = ['chart-fault-latency', 'chart-throughput', 'chart-lock-waits'];
// Flags for a quiet, offline, sandbox-less headless Chromium (playwright adds --headless).
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

let passed = 0;
let failed = 0;
function check(name, ok, detail = '') {
  if (ok) {
    passed++;
    console.log(`  ok   ${name}`);
  } else {
    failed++;
    console.log(`  FAIL ${name}${detail ? `: ${detail}` : ''}`);
  }
  return ok;
}
function finish() {
  console.log(`browser: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

if (!existsSync(CHROMIUM)) {
  console.error(
    `browser: ${CHROMIUM} not found. This test needs Debian's chromium package:\n` +
      `  apt-get update && apt-get install -y --no-install-recommends chromium    (as root, or with sudo)\n` +
      `(or set CHROMIUM_BIN to another Chromium/Chrome binary).`,
  );
  failed++;
  finish();
}

let renderReport;
let reportFromMultiVm;
let reportFromPolicies;
try {
  ({ renderReport } = await import('../../dist/src/vmm/report/html.js'));
  ({ reportFromMultiVm, reportFromPolicies } = await import('../../dist/src/vmm/report/build.js'));
} catch (err) {
  console.error(`browser: cannot import dist/src/vmm/report/{html,build}.js (run \`npm run build\` first): ${err.message}`);
  failed++;
  finish();
}

// ---------------------------------------------------------------------------------------------
// Realistic sample data (deterministic: a small LCG stands in for Math.random).

let lcg = 42;
const rand = () => (lcg = (lcg * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;

function sampleData() {
  const faultLatency = [];
  for (let k = 8; k <= 21; k++) {
    // Log-normal-ish around 4-8µs with a slow tail (lock contention) near 0.5ms.
    const peak = Math.round(5200 * Math.exp(-((k - 12.5) ** 2) / 2.2));
    const tail = Math.round(160 * Math.exp(-((k - 19) ** 2) / 1.5));
    faultLatency.push({ lowNs: 2 ** k, highNs: 2 ** (k + 1), count: k === 17 ? 0 : peak + tail });
  }
  const throughput = [];
  for (let i = 0; i <= 50; i++) {
    const tMs = i * 100;
    const ramp = Math.min(1, i / 6);
    const dip = i >= 28 && i <= 32 ? 0.45 : 1; // a memslot update stalls the vCPUs
    throughput.push({ tMs, faultsPerSecond: Math.round(48_000 * ramp * dip * (0.9 + 0.2 * rand())) });
  }
  const lockWaits = [
    { lock: 'kvm->mmu_lock (rw)', waitMs: 184.2, contended: 1312 },
    { lock: 'filemap_invalidate_lock', waitMs: 96.75, contended: 402 },
    { lock: 'kvm->slots_lock', waitMs: 31.4, contended: 57 },
    { lock: 'sev->rmp_lock', waitMs: 12.05, contended: 19 },
    { lock: 'folio lock', waitMs: 2.5, contended: 6 },
  ];
  const total = faultLatency.reduce((s, b) => s + b.count, 0);
  return {
    title: 'gmem-sandbox run: prepare-on-fault, 4 vCPUs, SNP',
    command: "gmem-sandbox run --policy prepare-on-fault --vcpus 4 --memory 256MiB --seed 42 --report 'out/run <1>.html'",
    seed: 42,
    generatedAt: '2025-06-01T12:00:00.000Z',
    summary: [
      ['policy', 'prepare-on-fault'],
      ['vCPUs', 4],
      ['duration', '5.0 s'],
      ['faults', total],
      ['verdict', 'PASS: no guest saw unprepared memory'],
    ],
    tables: [
      {
        title: 'Faults per vCPU',
        columns: ['vCPU', 'faults', 'p50 latency', 'p99 latency', 'VC exits'],
        rows: [
          [0, Math.round(total * 0.26), '5.8µs', '410µs', 12],
          [1, Math.round(total * 0.25), '6.1µs', '388µs', 9],
          [2, Math.round(total * 0.24), '5.9µs', '455µs', 14],
          [3, Math.round(total * 0.25), '6.0µs', '402µs', 11],
          ['<script>alert("x")</script>', 0, '-', '-', 0],
        ],
        note: 'Each vCPU runs on its own worker thread; latency is measured from EPT violation to resume.',
      },
      {
        title: 'Lock classes',
        columns: ['lock', 'wait ms', 'contended'],
        rows: lockWaits.map((l) => [l.lock, l.waitMs, l.contended]),
        note: 'Contended = acquisitions that had to wait.',
      },
    ],
    faultLatency,
    throughput,
    lockWaits,
  };
}

const emptyData = () => ({
  ...sampleData(),
  title: 'gmem-sandbox run: empty',
  summary: [],
  tables: [],
  faultLatency: [],
  throughput: [],
  lockWaits: [],
});

// ---------------------------------------------------------------------------------------------
// Geometry helpers (run in the page)

/** Laid-out boxes of the elements matching `selector` inside svg#id, in document order. */
async function boxes(page, id, selector) {
  return page.$$eval(`svg#${id} ${selector}`, (els) =>
    els.map((e) => {
      const r = e.getBoundingClientRect();
      return {
        x: r.x,
        y: r.y,
        w: r.width,
        h: r.height,
        title: e.querySelector('title')?.textContent ?? '',
        fill: getComputedStyle(e).fill,
      };
    }),
  );
}

/** Largest gap between two lists of numbers scaled to match at their maxima. */
function proportionError(actual, expected) {
  const ka = Math.max(...actual);
  const ke = Math.max(...expected);
  return Math.max(...actual.map((a, i) => Math.abs(a - (expected[i] * ka) / ke)));
}

// ---------------------------------------------------------------------------------------------
// The test

const work = mkdtempSync(join(tmpdir(), 'gmem-browser-'));
const t0 = Date.now();
let context;
try {
  const data = sampleData();
  const reportFile = join(work, 'report.html');
  const emptyFile = join(work, 'empty.html');
  writeFileSync(reportFile, renderReport(data), 'utf8');
  writeFileSync(emptyFile, renderReport(emptyData()), 'utf8');

  console.log(`browser: ${CHROMIUM} (playwright-core) on ${reportFile}`);
  // A fresh profile in the temp dir, removed with it.
  context = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1200, height: 2000 },
    deviceScaleFactor: 1,
    timeout: TIMEOUT_MS,
    offline: true,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  await page.goto(pathToFileURL(reportFile).href);

  check('page <title> rendered', (await page.title()) === data.title, await page.title());
  check(
    'command line in a <code> block',
    ((await page.textContent('code')) ?? '').startsWith('gmem-sandbox run --policy prepare-on-fault'),
  );
  const tables = await page.$$eval('table', (ts) => ts.length);
  check(`${data.tables.length} tables rendered`, tables === data.tables.length, `found ${tables}`);
  const scripts = await page.$$eval('script', (s) => s.length);
  check(
    'table text escaped (shown as text, no <script> element)',
    scripts === 0 && (await page.getByText('<script>alert("x")</script>').count()) === 1,
  );

  for (const id of IDS) {
    const svg = page.locator(`svg#${id}`);
    const box = await svg.boundingBox();
    check(
      `svg#${id} laid out (${box ? `${Math.round(box.width)}x${Math.round(box.height)}` : 'no box'})`,
      box !== null && box.width >= 900 && box.height >= 150,
    );
    check(
      `svg#${id} has role="img" and a title`,
      (await svg.getAttribute('role')) === 'img' && ((await svg.locator('title').first().textContent()) ?? '').length > 5,
    );
    if (KEEP) await svg.screenshot({ path: join(work, `${id}.png`) });
  }

  // Fault latency: one bar per non-empty bucket, left to right, heights proportional to counts,
  // standing on one baseline, each with its bucket as a tooltip, painted blue.
  const nonEmpty = data.faultLatency.filter((b) => b.count > 0);
  const bars = await boxes(page, 'chart-fault-latency', 'rect.bar');
  check(
    `fault latency: ${nonEmpty.length} bars for ${nonEmpty.length} non-empty buckets`,
    bars.length === nonEmpty.length,
    `found ${bars.length}`,
  );
  check(
    'fault latency: bars left to right in bucket order',
    bars.every((b, i) => i === 0 || b.x > bars[i - 1].x),
  );
  const hErr = proportionError(
    bars.map((b) => b.h),
    nonEmpty.map((b) => b.count),
  );
  check(`fault latency: bar heights proportional to counts (within ${hErr.toFixed(2)} px)`, hErr < 1.5);
  const baselines = bars.map((b) => b.y + b.h);
  check('fault latency: bars share a baseline', Math.max(...baselines) - Math.min(...baselines) < 0.5);
  check(
    'fault latency: tooltips give bucket and count',
    bars.every((b, i) => b.title.endsWith(`: ${nonEmpty[i].count} faults`)),
    bars[0]?.title,
  );
  check(
    `fault latency: bars painted ${bars[0]?.fill}`,
    bars.every((b) => b.fill === 'rgb(47, 111, 179)'),
  );

  // Throughput: one polyline point per sample; x grows with time and y falls as the rate rises,
  // both linearly (the points lie on the data's own scale).
  const pts = await page.$eval('svg#chart-throughput polyline.line', (p) => {
    const m = p.getScreenCTM();
    return Array.from(p.points).map((q) => ({ x: m.a * q.x + m.c * q.y + m.e, y: m.b * q.x + m.d * q.y + m.f }));
  });
  check(`throughput: ${data.throughput.length} points`, pts.length === data.throughput.length, `found ${pts.length}`);
  const fit = (xs, ys) => {
    const n = xs.length;
    const mx = xs.reduce((a, b) => a + b, 0) / n;
    const my = ys.reduce((a, b) => a + b, 0) / n;
    const k = xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0) / xs.reduce((a, x) => a + (x - mx) ** 2, 0);
    return { k, err: Math.max(...xs.map((x, i) => Math.abs(my + k * (x - mx) - ys[i]))) };
  };
  const fx = fit(
    data.throughput.map((s) => s.tMs),
    pts.map((p) => p.x),
  );
  const fy = fit(
    data.throughput.map((s) => s.faultsPerSecond),
    pts.map((p) => p.y),
  );
  check(`throughput: x linear in time (within ${fx.err.toFixed(2)} px)`, fx.k > 0 && fx.err < 0.5);
  check(`throughput: y linear in rate, higher is up (within ${fy.err.toFixed(2)} px)`, fy.k < 0 && fy.err < 0.5);
  const tbox = await page.locator('svg#chart-throughput').boundingBox();
  check(
    'throughput: every point inside the chart',
    pts.every((p) => p.x >= tbox.x && p.x <= tbox.x + tbox.width && p.y >= tbox.y && p.y <= tbox.y + tbox.height),
  );

  // Lock waits: one horizontal bar per lock class, widths proportional to wait time, labelled
  // with the contended count, painted orange.
  const lockBars = await boxes(page, 'chart-lock-waits', 'rect.bar');
  check(`lock waits: ${data.lockWaits.length} bars`, lockBars.length === data.lockWaits.length, `found ${lockBars.length}`);
  const wErr = proportionError(
    lockBars.map((b) => b.w),
    data.lockWaits.map((l) => l.waitMs),
  );
  check(`lock waits: widths proportional to wait time (within ${wErr.toFixed(2)} px)`, wErr < 1.5);
  check(
    'lock waits: one bar per row, top to bottom',
    lockBars.every((b, i) => i === 0 || b.y > lockBars[i - 1].y + lockBars[i - 1].h - 0.5),
  );
  const lockText = (await page.locator('svg#chart-lock-waits').textContent()) ?? '';
  check(
    'lock waits: labels name each lock and its contended count',
    data.lockWaits.every((l) => lockText.includes(l.lock) && lockText.includes(`${l.contended} contended`)),
  );
  check(
    `lock waits: bars painted ${lockBars[0]?.fill}`,
    lockBars.every((b) => b.fill === 'rgb(194, 87, 26)'),
  );

  // With no data every chart is still there, saying so.
  await page.goto(pathToFileURL(emptyFile).href);
  for (const id of IDS) {
    const svg = page.locator(`svg#${id}`);
    const shapes = await svg.locator('rect.bar, polyline').count();
    check(
      `empty data: svg#${id} shows "no data" and nothing else`,
      (await svg.locator('text', { hasText: /^no data$/ }).count()) === 1 && shapes === 0,
      `${shapes} shapes`,
    );
  }

  // The experiment reports, every kernel version each, in a 1280 px wide window; full-page
  // screenshots to look at (kept with --keep).
  const wide = await context.newPage();
  wide.setDefaultTimeout(TIMEOUT_MS);
  await wide.setViewportSize({ width: 1280, height: 900 });
  await wide.goto(pathToFileURL(reportFile).href);
  const runFit = await tablesFit(wide);
  check(
    `run report at 1280 px: all ${runFit.headers} column headers and every cell visible`,
    runFit.bad.length === 0 && runFit.pageScroll <= 0,
    runFit.bad.slice(0, 4).join('; '),
  );
  check(
    'run report: one unlabelled series, so no legend',
    (await wide.locator('svg.chart .legend, svg.chart [data-series]').count()) === 0,
  );
  const experiments = [
    ['multi-vm', reportFromMultiVm(multiVmResults(), 'gmem-sandbox experiment multi-vm --report multi-vm.html'), true],
    ['policies', reportFromPolicies(policyRows(), 'gmem-sandbox experiment policies --report policies.html'), false],
  ];
  for (const [name, report, ownerMap] of experiments) {
    const file = join(work, `${name}.html`);
    writeFileSync(file, renderReport(report), 'utf8');
    await wide.goto(pathToFileURL(file).href);
    await checkReadable(wide, check, name, { ownerMap });
    await wide.screenshot({ path: join(work, `${name}-1280.png`), fullPage: true });
  }
} catch (err) {
  check('browser test ran without throwing', false, err && err.stack ? err.stack : String(err));
} finally {
  await context?.close().catch(() => undefined);
  console.log(`browser: total ${Date.now() - t0} ms`);
  if (KEEP) console.log(`browser: kept ${work} (report.html, empty.html, multi-vm.html, policies.html, chart and page PNGs)`);
  else rmSync(work, { recursive: true, force: true });
}
finish();
