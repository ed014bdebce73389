// Browser test for the HTML report (npm run test:browser): renders sample reports with the built
// renderer (dist/), loads them in headless Chromium (Debian's chromium package), and checks the
// DOM after rendering and a screenshot. No npm dependencies: node builtins and /usr/bin/chromium.
//
//   npm run test:browser            build, then run
//   node test/browser/run.mjs --keep   keep the temp dir (report.html, report.png) and print its path
//
// Ends with "browser: N passed, M failed"; exits 1 on any failure.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inflateSync } from 'node:zlib';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.BROWSER_TIMEOUT_MS || 90_000);
const KEEP = process.argv.includes('--keep') || process.env.KEEP_REPORT === '1';
const IDS = ['chart-fault-latency', 'chart-throughput', 'chart-lock-waits'];

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
      `  apt-get update && apt-get install -y chromium    (as root, or with sudo)\n` +
      `(or set CHROMIUM_BIN to another Chromium/Chrome binary).`,
  );
  failed++;
  finish();
}

let renderReport;
try {
  ({ renderReport } = await import('../../dist/src/vmm/report/html.js'));
} catch (err) {
  console.error(`browser: cannot import dist/src/vmm/report/html.js (run \`npm run build\` first): ${err.message}`);
  failed++;
  finish();
}

// ---------------------------------------------------------------------------------------------
// Realistic sample data (deterministic: a small LCG stands in for Math.random).

let lcg = 42;
const rand = () => ((lcg = (lcg * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

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
// Chromium

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--hide-scrollbars',
  '--force-device-scale-factor=1',
];

/** Runs chromium in its own process group; kills the whole group on timeout. */
function chromium(args, work) {
  const profile = mkdtempSync(join(work, 'profile-'));
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, TIMEOUT_MS);
    const done = (code, error) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut, error, ms: Date.now() - started });
    };
    child.on('error', (err) => done(null, err));
    child.on('close', (code) => done(code, undefined));
  });
}

function describeRun(r) {
  if (r.error) return `spawn failed: ${r.error.message}`;
  if (r.timedOut) return `timed out after ${TIMEOUT_MS} ms`;
  return `exit ${r.code}; stderr tail: ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`;
}

// ---------------------------------------------------------------------------------------------
// DOM and PNG helpers

/** The serialized <svg id="..."> element from the dumped DOM, or '' if absent. */
function svgOf(dom, id) {
  const m = new RegExp(`<svg\\b[^>]*\\bid="${id}"[^>]*>`).exec(dom);
  if (!m) return '';
  const end = dom.indexOf('</svg>', m.index);
  return end < 0 ? '' : dom.slice(m.index, end + 6);
}
const count = (s, re) => (s.match(re) || []).length;

/** Decodes an 8-bit RGB/RGBA non-interlaced PNG into { width, height, channels, pixels }. */
function decodePng(buf) {
  const sig = '89504e470d0a1a0a';
  if (buf.subarray(0, 8).toString('hex') !== sig) throw new Error('not a PNG');
  let off = 8;
  let width = 0, height = 0, depth = 0, type = 0, interlace = 0;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const kind = buf.toString('ascii', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (kind === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      depth = data[8];
      type = data[9];
      interlace = data[12];
    } else if (kind === 'IDAT') idat.push(data);
    else if (kind === 'IEND') break;
    off += 12 + len;
  }
  const channels = type === 6 ? 4 : type === 2 ? 3 : 0;
  if (depth !== 8 || !channels || interlace) throw new Error(`unsupported PNG (depth ${depth}, type ${type}, interlace ${interlace})`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[y * stride + x - channels] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels] : 0;
      let v = line[x];
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      pixels[y * stride + x] = v & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

/** Number of pixels within tol of an #rrggbb colour. */
function pixelsNear(img, hex, tol = 10) {
  const r = parseInt(hex.slice(1, 3), 16), g = parseInt(hex.slice(3, 5), 16), b = parseInt(hex.slice(5, 7), 16);
  let n = 0;
  for (let i = 0; i < img.pixels.length; i += img.channels) {
    if (Math.abs(img.pixels[i] - r) <= tol && Math.abs(img.pixels[i + 1] - g) <= tol && Math.abs(img.pixels[i + 2] - b) <= tol) n++;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// The test

const work = mkdtempSync(join(tmpdir(), 'gmem-browser-'));
const t0 = Date.now();
try {
  const data = sampleData();
  const reportFile = join(work, 'report.html');
  const emptyFile = join(work, 'empty.html');
  const png = join(work, 'report.png');
  writeFileSync(reportFile, renderReport(data), 'utf8');
  writeFileSync(emptyFile, renderReport(emptyData()), 'utf8');

  console.log(`browser: ${CHROMIUM} on ${reportFile}`);
  const dump = await chromium(['--dump-dom', pathToFileURL(reportFile).href], work);
  const dom = dump.stdout;
  check(`chromium --dump-dom ran (${dump.ms} ms)`, dump.code === 0 && dom.length > 1000, describeRun(dump));
  check('page <title> rendered', dom.includes(`<title>${data.title}</title>`), 'title missing from DOM');
  check('command line in a <code> block', dom.includes('<code>gmem-sandbox run --policy prepare-on-fault'), 'no <code> command');
  check(`${data.tables.length} tables rendered`, count(dom, /<table>/g) === data.tables.length, `found ${count(dom, /<table>/g)}`);
  check('table text escaped (no injected <script>)', !/<script/i.test(dom) && dom.includes('&lt;script&gt;'), 'escaping broken');
  for (const id of IDS) {
    const svg = svgOf(dom, id);
    check(`svg#${id} present with role="img" and <title>`, svg !== '' && /role="img"/.test(svg) && /<title\b[^>]*>[^<]+<\/title>/.test(svg), 'missing');
    const shapes = count(svg, /<(rect|polyline|path|circle|line|text)\b/g);
    check(`svg#${id} has child shapes (${shapes})`, shapes > 3 && !svg.includes('no data'), 'empty chart');
  }
  const nonEmpty = data.faultLatency.filter((b) => b.count > 0).length;
  const bars = count(svgOf(dom, 'chart-fault-latency'), /<rect class="bar"/g);
  check(`fault latency: ${nonEmpty} bars for ${nonEmpty} non-empty buckets`, bars === nonEmpty, `found ${bars}`);
  const points = (/<polyline class="line" points="([^"]*)"/.exec(svgOf(dom, 'chart-throughput')) || [])[1] || '';
  const nPoints = points.trim() ? points.trim().split(/\s+/).length : 0;
  check(`throughput: polyline has ${data.throughput.length} points`, nPoints === data.throughput.length, `found ${nPoints}`);
  const lockSvg = svgOf(dom, 'chart-lock-waits');
  const lockBars = count(lockSvg, /<rect class="bar"/g);
  check(`lock waits: ${data.lockWaits.length} bars with contended labels`, lockBars === data.lockWaits.length && lockSvg.includes('1312 contended'), `found ${lockBars}`);

  const emptyDump = await chromium(['--dump-dom', pathToFileURL(emptyFile).href], work);
  const noData = IDS.filter((id) => {
    const s = svgOf(emptyDump.stdout, id);
    return s.includes('>no data</text>') && !/<rect class="bar"|<polyline/.test(s);
  });
  check(`empty data: all 3 charts present showing "no data" (${emptyDump.ms} ms)`, emptyDump.code === 0 && noData.length === 3, emptyDump.code === 0 ? `only ${noData.join(', ')}` : describeRun(emptyDump));

  const shot = await chromium(['--screenshot=' + png, '--window-size=1200,2000', pathToFileURL(reportFile).href], work);
  const size = existsSync(png) ? statSync(png).size : 0;
  check(`chromium --screenshot ran (${shot.ms} ms)`, shot.code === 0, describeRun(shot));
  check(`screenshot PNG is non-trivial (${size} bytes)`, size > 20_000, `${size} bytes`);
  if (size > 0) {
    let img;
    try {
      img = decodePng(readFileSync(png));
    } catch (err) {
      check('screenshot PNG decodes', false, err.message);
    }
    if (img) {
      check(`screenshot is 1200x2000 (${img.width}x${img.height})`, img.width === 1200 && img.height === 2000);
      // The chart fills are solid colours from the page CSS: blue bars/line, orange lock bars.
      const blue = pixelsNear(img, '#2f6fb3');
      const orange = pixelsNear(img, '#c2571a');
      check(`screenshot shows painted histogram/throughput (${blue} blue px)`, blue > 5000);
      check(`screenshot shows painted lock-wait bars (${orange} orange px)`, orange > 2000);
    }
  }
} catch (err) {
  check('browser test ran without throwing', false, err && err.stack ? err.stack : String(err));
} finally {
  console.log(`browser: total ${Date.now() - t0} ms`);
  if (KEEP) console.log(`browser: kept ${work} (report.html, empty.html, report.png)`);
  else rmSync(work, { recursive: true, force: true });
}
finish();
