/* global document, getComputedStyle */
// The experiment reports (experiment multi-vm, experiment policies) in a 1280 px wide browser:
// sample results shaped like real runs of every modelled kernel version go through the real report
// builders (dist/src/vmm/report/build.js), and the checks read what Chromium laid out:
//   - every header and cell of every table lies inside the viewport and inside every scrolling
//     or clipping box around it (no column hidden behind a horizontal scrollbar);
//   - every chart has a legend with one entry per kernel version, every series it draws belongs
//     to one entry and is painted in that entry's colour;
//   - one explanation paragraph per kernel version, each opening with the kernel's name;
//   - the page-owner map lays out whole rows: 64 pages a line, no wrapped last row.

export const KERNELS = [
  ['6.10', 'prepare-on-allocate'],
  ['b85524314a', 'prepare-on-fault'],
  ['6.11', 'prepare-on-fault-own-vm'],
  ['6.18', 'prepare-on-fault-own-vm'],
  ['6.19', 'prepare-on-fault-own-vm'],
  ['7.0', 'prepare-on-every-fault'],
  ['7.4', 'prepare-on-every-fault'],
];
export const PAGES = 256;
export const PAGES_PER_ROW = 64;

let lcg = 7;
const rand = () => (lcg = (lcg * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;

/** The parts of a StressReport the builders read, for run `i` of `faults` faults. */
function run(i, faults, durationMs) {
  // Log2 buckets from 1µs to 4ms: a peak near 4µs (later kernels a little slower), a thin tail.
  const weights = [];
  for (let k = 10; k <= 22; k++) weights.push(Math.exp(-((k - 12 - (i % 3) * 0.4) ** 2) / 1.6) + 0.01 * (1 + rand()));
  const sum = weights.reduce((a, b) => a + b, 0);
  const faultLatency = weights.map((w, j) => ({ lowNs: 2 ** (10 + j), highNs: 2 ** (11 + j), count: Math.round((faults * w) / sum) }));
  const throughput = [];
  for (let t = 100; t <= durationMs; t += 100)
    throughput.push({ tMs: t, faultsPerSecond: Math.round((faults / durationMs) * 1000 * (0.8 + 0.4 * rand())) });
  const lockWaits = ['allocator', 'folio', 'invalidate', 'mmu', 'slots', 'other', 'srcu'].map((lock, j) => ({
    lock,
    waitMs: j === 3 ? 120 + 80 * rand() : j === 0 ? 0.02 * (i + 1) : 0,
    contended: j === 3 ? 30 + i * 20 : j === 0 ? 1 : 0,
  }));
  return { seed: 1, faultLatency, throughput, lockWaits };
}

/** Owners of PAGES pages: the first three quarters have folios, the last quarter none. */
function owners(i) {
  const pages = [];
  for (let p = 0; p < PAGES; p++) {
    if (p >= (PAGES * 3) / 4) pages.push(null);
    else if (i < 2) pages.push(1);
    else pages.push(rand() < 0.1 ? 'shared' : rand() < 0.3 + 0.2 * i ? 0 : 1);
  }
  const byVm = [0, 1].map((v) => pages.filter((x) => x === v).length);
  return { byVm, pages, unassigned: pages.filter((x) => x === 'shared').length, contested: (PAGES * 3) / 4 };
}

/** MultiVmResult[] as experiment multi-vm --vms 2 --pages 256 returns them (the sentences' shapes are the real ones). */
export function multiVmResults() {
  return KERNELS.map(([kernel, policy], i) => {
    const o = owners(i);
    const ownVm = i >= 2;
    const faults = 512;
    const arch = ownVm ? 192 : i === 0 ? 768 : 384;
    const sentence = ownVm
      ? `Each fault prepared the page for the faulting VM only (${(arch / faults).toFixed(2)} arch-prepare calls per fault), so the ${o.contested} contested pages went to whichever VM touched them first (VM 0: ${o.byVm[0]}, VM 1: ${o.byVm[1]}); a VM that then touched a page another VM owns took an RMP violation (${150000 + i * 1111} of them).`
      : `The arch prepare ran ${i === 0 ? 'on every fault' : 'once per folio'} for all 2 bound VMs in the inode's list order (${(arch / faults).toFixed(2)} calls per fault, ${arch / 2} of the ${arch} for a VM other than the faulting one); the first VM in that list, VM 1 (the newest link), took 100% of the ${o.contested} contested pages and the others "succeeded" without an RMP change, so a VM's access to the page it faulted itself was an RMP violation (${276295 + i * 60000} of them).`;
    return {
      kernel,
      policy,
      faults,
      archPrepareCalls: arch,
      crossVmArchPrepareCalls: ownVm ? 0 : arch / 2,
      archPreparePerFault: arch / faults,
      rmpViolations: 150000 + i * 1111,
      owners: o,
      firstInList: 1,
      sentence,
      run: run(i, faults, 1000),
    };
  });
}

/** PolicyRow[] as experiment policies returns them. */
export function policyRows() {
  return KERNELS.map(([kernel, policy], i) => {
    const faults = 4200 + i * 230;
    return {
      kernel,
      policy,
      faults,
      prepares: 3000 + i * 120,
      archPrepareCalls: i === 0 ? 3376 : 3000 + i * 120,
      firmwareCommands: 2,
      punchHoleLeftovers: i === 2 ? 2 : 0,
      faultsPerSecond: faults / 2 + 0.333,
      launchUpdateAfterFallocate: i === 0 ? 'EIO (populate: EINVAL)' : 'ok',
      violations: 0,
      run: run(i, faults, 2000),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Checks (each reads the laid-out page)

/** Every th and td: inside the viewport and inside each ancestor that scrolls or clips. */
export async function tablesFit(page) {
  return page.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const bad = [];
    for (const cell of document.querySelectorAll('table th, table td')) {
      const r = cell.getBoundingClientRect();
      const name = `${cell.tagName.toLowerCase()} "${cell.textContent.trim().slice(0, 30)}"`;
      if (r.left < -0.5 || r.right > vw + 0.5) bad.push(`${name} at x ${Math.round(r.left)}..${Math.round(r.right)}, viewport ${vw}`);
      for (let a = cell.parentElement; a && a !== document.body; a = a.parentElement) {
        if (getComputedStyle(a).overflowX === 'visible') continue;
        const b = a.getBoundingClientRect();
        if (r.left < b.left - 0.5 || r.right > b.right + 0.5 || a.scrollWidth > a.clientWidth + 1)
          bad.push(
            `${name} clipped by <${a.tagName.toLowerCase()} class="${a.className}"> (scrollWidth ${a.scrollWidth} > ${a.clientWidth})`,
          );
      }
    }
    const headers = document.querySelectorAll('table th').length;
    return { headers, bad, pageScroll: document.documentElement.scrollWidth - vw };
  });
}

/** Each svg.chart: its legend entries, and each drawn series' index and paint. */
async function chartSeries(page) {
  return page.$$eval('svg.chart', (svgs) =>
    svgs.map((svg) => {
      const box = (e) => e.getBoundingClientRect();
      const items = [...svg.querySelectorAll('.legend .legend-item')].map((it) => ({
        series: it.getAttribute('data-series'),
        label: it.textContent.trim(),
        colour: getComputedStyle(it.querySelector('.swatch')).fill,
        box: box(it).toJSON(),
      }));
      const marks = [...svg.querySelectorAll('rect.bar, polyline.line')].map((m) => ({
        series: m.getAttribute('data-series'),
        colour: m.tagName === 'polyline' ? getComputedStyle(m).stroke : getComputedStyle(m).fill,
        box: box(m).toJSON(),
      }));
      return { id: svg.id, items, marks, svg: box(svg).toJSON() };
    }),
  );
}

const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;

/** True if `text` opens with the kernel name `k` as a word ("6.1" does not open "6.10"). */
const opensWith = (text, k) => text.startsWith(k) && !/[\w.]/.test(text.charAt(k.length));

/**
 * Lines of each page-owner map: for each row of the table whose caption says who owns each
 * page, the characters of its last cell grouped by the line they were laid out on.
 */
async function ownerMapLines(page) {
  return page.evaluate(() => {
    const table = [...document.querySelectorAll('table')].find((t) => /owns each page/i.test(t.caption?.textContent ?? ''));
    if (!table) return null;
    const vw = document.documentElement.clientWidth;
    return [...table.tBodies[0].rows].map((row) => {
      const cell = row.cells[row.cells.length - 1];
      const lines = new Map();
      let clipped = 0;
      const walker = document.createTreeWalker(cell, 4 /* NodeFilter.SHOW_TEXT */);
      const range = document.createRange();
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        for (let i = 0; i < n.data.length; i++) {
          if (/\s/.test(n.data[i])) continue;
          range.setStart(n, i);
          range.setEnd(n, i + 1);
          const r = range.getBoundingClientRect();
          const top = Math.round(r.top);
          lines.set(top, (lines.get(top) ?? 0) + 1);
          // Seen: inside the viewport and every box that clips or scrolls.
          let seen = r.right <= vw + 0.5;
          for (let a = n.parentElement; a && a !== document.body; a = a.parentElement)
            if (getComputedStyle(a).overflowX !== 'visible' && r.right > a.getBoundingClientRect().right + 0.5) seen = false;
          if (!seen) clipped++;
        }
      }
      return {
        kernel: row.cells[0].textContent.trim(),
        perLine: [...lines.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]),
        clipped,
      };
    });
  });
}

/**
 * Checks one experiment report open in `page` (1280 px wide): tables, charts, explanations and,
 * when `ownerMap`, the page-owner map.
 */
export async function checkReadable(page, check, name, { ownerMap }) {
  const kernels = KERNELS.map(([k]) => k);
  const fit = await tablesFit(page);
  check(
    `${name}: all ${fit.headers} column headers and every cell inside the 1280 px viewport, none clipped`,
    fit.headers > 0 && fit.bad.length === 0 && fit.pageScroll <= 0,
    `${fit.bad.length} hidden: ${fit.bad.slice(0, 4).join('; ')}; page scrolls ${fit.pageScroll} px sideways`,
  );

  for (const c of await chartSeries(page)) {
    const labels = c.items.map((it) => it.label);
    check(
      `${name}: #${c.id} legend names the ${kernels.length} kernel versions in order`,
      labels.length === kernels.length && kernels.every((k, i) => opensWith(labels[i], k)),
      `legend: [${labels.join(' | ')}]`,
    );
    const byIndex = new Map(c.items.map((it) => [it.series, it]));
    const strays = c.marks.filter((m) => !byIndex.has(m.series) || byIndex.get(m.series).colour !== m.colour);
    const drawn = new Set(c.marks.map((m) => m.series));
    check(
      `${name}: #${c.id} draws ${c.marks.length} marks, each in its legend entry's colour, every kernel drawn`,
      c.marks.length > 0 && strays.length === 0 && c.items.every((it) => drawn.has(it.series)),
      `${strays.length} marks without a matching legend entry (series ${strays[0]?.series}, ${strays[0]?.colour}); drawn: ${[...drawn].join(',')}`,
    );
    const colours = new Set(c.items.map((it) => it.colour));
    const covered = c.items.filter((it) => c.marks.some((m) => overlaps(it.box, m.box)) || it.box.right > c.svg.right + 0.5);
    check(
      `${name}: #${c.id} legend colours distinct, entries inside the chart and clear of the data`,
      colours.size === c.items.length && covered.length === 0,
      `${colours.size} colours; ${covered.map((it) => it.label).join(', ')} covered or outside`,
    );
  }

  const paras = await page.$$eval('main p', (ps) => ps.map((p) => p.textContent.trim().replace(/\s+/g, ' ')));
  const opening = paras.filter((p) => kernels.some((k) => opensWith(p, k)));
  check(
    `${name}: one explanation paragraph per kernel version, each opening with its name`,
    opening.length === kernels.length && kernels.every((k) => opening.filter((p) => opensWith(p, k)).length === 1),
    `${opening.length} paragraphs open with a kernel name: ${opening.map((p) => JSON.stringify(p.slice(0, 24))).join(', ')}`,
  );

  if (ownerMap) {
    const maps = await ownerMapLines(page);
    const want = Array.from({ length: Math.ceil(PAGES / PAGES_PER_ROW) }, (_, i) => Math.min(PAGES_PER_ROW, PAGES - i * PAGES_PER_ROW));
    const wrong = (maps ?? []).filter((m) => m.perLine.join() !== want.join() || m.clipped > 0);
    check(
      `${name}: page-owner map of each kernel version lays out whole rows (${want.join('+')} pages, none clipped)`,
      maps !== null && maps.length === kernels.length && wrong.length === 0,
      maps === null ? 'no page-owner table' : wrong.map((m) => `${m.kernel}: ${m.perLine.join('+')} (${m.clipped} clipped)`).join('; '),
    );
  }
}
