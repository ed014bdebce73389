// The report's three SVG charts, each drawing one series per run: a report of one run draws it
// unlabelled; an experiment's report draws one labelled series per kernel version, each in its
// own colour, named by a legend above the plot.
//
//   #chart-fault-latency  bars of the log2 fault latency histogram (one rect.bar per non-empty
//                         bucket and series; a series' bars stand side by side in each bucket)
//   #chart-throughput     faults per second over time (one polyline.line per series, a point per sample)
//   #chart-lock-waits     horizontal bars of wait time per lock class, one per series, labelled
//                         with contended counts
// Every mark of a labelled series carries class series-N and data-series="N", as does its legend
// entry. With no data a chart still renders its <svg>, showing a "no data" text.

import type { FaultLatency, LockWaits, Throughput } from './model.js';
import {
  W,
  compactNum,
  escapeHtml,
  humanNs,
  labelled,
  legend,
  msLabel,
  niceTicks,
  noData,
  px,
  type Series,
  seriesAttrs,
  seriesPrefix,
  svgOpen,
  trimNum,
  yAxis,
} from './svg.js';

type Bucket = FaultLatency[number];
type Sample = Throughput[number];
type LockWait = LockWaits[number];

/** Where the plot starts below the legend (20 px with none). */
function plotTop(series: Series<unknown>[], right: number): { legendSvg: string; top: number } {
  const l = legend(series, 10, 56, right);
  return { legendSvg: l.svg, top: l.height > 0 ? 10 + l.height + 6 : 20 };
}

// ---------------------------------------------------------------------------------------------
// Fault latency

/** The buckets any series filled, trimmed of empty ones at either end, and each series' counts in them. */
function latencyGrid(series: Series<Bucket>[]): { buckets: Array<{ lowNs: number; highNs: number }>; counts: number[][] } {
  const clean = series.map((s) => s.data.filter((b) => Number.isFinite(b.lowNs) && Number.isFinite(b.count)));
  const all = new Map<number, number>();
  for (const d of clean) for (const b of d) all.set(b.lowNs, b.highNs);
  const sorted = [...all.entries()].sort((a, b) => a[0] - b[0]).map(([lowNs, highNs]) => ({ lowNs, highNs }));
  const counts = clean.map((d) => sorted.map((b) => d.filter((x) => x.lowNs === b.lowNs).reduce((s, x) => s + x.count, 0)));
  // Drop empty buckets at either end; keep empty ones in between so the log2 axis stays even.
  const filled = (j: number) => counts.some((c) => c[j] > 0);
  const first = sorted.findIndex((_, j) => filled(j));
  let last = sorted.length - 1;
  while (last >= 0 && !filled(last)) last--;
  if (first < 0) return { buckets: [], counts: counts.map(() => []) };
  return { buckets: sorted.slice(first, last + 1), counts: counts.map((c) => c.slice(first, last + 1)) };
}

function latencyDesc(series: Series<Bucket>[], grid: ReturnType<typeof latencyGrid>): string {
  const { buckets, counts } = grid;
  const range = `${buckets.length} log2 latency buckets from ${humanNs(buckets[0].lowNs)} to ${humanNs(buckets[buckets.length - 1].highNs)}`;
  const one = (c: number[]) => {
    const max = Math.max(...c);
    return { total: c.reduce((a, b) => a + b, 0), max, at: buckets[c.indexOf(max)] };
  };
  if (!labelled(series)) {
    const s = one(counts[0]);
    return `${s.total} faults in ${range}; the fullest bucket holds ${s.max}.`;
  }
  const per = series.map((x, i) => {
    const s = one(counts[i]);
    return `${x.name}: ${s.total} faults, most (${s.max}) in [${humanNs(s.at.lowNs)}, ${humanNs(s.at.highNs)})`;
  });
  return `${range}; ${per.join('; ')}.`;
}

/** Bar chart of the log2 fault latency histogram: one bar per series in each bucket. */
export function faultLatencyChart(series: Series<Bucket>[]): string {
  const id = 'chart-fault-latency';
  const title = 'Fault latency histogram';
  const grid = latencyGrid(series);
  const { buckets, counts } = grid;
  if (buckets.length === 0) return svgOpen(id, 300, title, 'No fault latency samples were recorded.') + noData(300) + '</svg>';
  const { legendSvg, top } = plotTop(series, W - 16);
  const m = { top, right: 16, bottom: 52, left: 56 };
  const H = top + 228 + m.bottom;
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const n = series.length;
  const maxCount = Math.max(...counts.flat());
  const { ticks, hi } = niceTicks(0, maxCount);
  const y = (v: number) => m.top + plotH - (v / hi) * plotH;
  // Slots are capped so a handful of buckets does not become a wall of colour; the group is centred.
  const slot = Math.min(plotW / buckets.length, n === 1 ? 72 : 24 * n + 12);
  const x0 = m.left + (plotW - slot * buckets.length) / 2;
  const groupW = Math.max(n, slot * 0.8);
  const barW = groupW / n;
  const labelEvery = Math.max(1, Math.ceil(48 / slot));
  let out = svgOpen(id, H, title, latencyDesc(series, grid)) + legendSvg;
  out += yAxis(ticks, y, m.left, W - m.right, compactNum);
  buckets.forEach((b, j) => {
    const cx = x0 + j * slot + slot / 2;
    series.forEach((s, i) => {
      const count = counts[i][j];
      if (!(count > 0)) return;
      const h = Math.max(1, m.top + plotH - y(count));
      const bx = cx - groupW / 2 + i * barW;
      const tip = `${seriesPrefix(s)}[${humanNs(b.lowNs)}, ${humanNs(b.highNs)}): ${count} faults`;
      out +=
        `<rect ${seriesAttrs(series, i, 'bar')} x="${px(bx)}" y="${px(m.top + plotH - h)}" width="${px(n > 1 ? Math.max(1, barW - 1) : barW)}" ` +
        `height="${px(h)}"><title>${escapeHtml(tip)}</title></rect>`;
      if (barW >= 24) {
        out += `<text class="value" x="${px(bx + barW / 2)}" y="${px(m.top + plotH - h - 4)}" text-anchor="middle">${escapeHtml(compactNum(count))}</text>`;
      }
    });
    if (j % labelEvery === 0) {
      out += `<text class="tick" x="${px(cx)}" y="${m.top + plotH + 16}" text-anchor="middle">${escapeHtml(humanNs(b.lowNs))}</text>`;
    }
  });
  out += `<line class="axis" x1="${m.left}" x2="${W - m.right}" y1="${m.top + plotH}" y2="${m.top + plotH}"/>`;
  out += `<text class="axis-title" x="${m.left + plotW / 2}" y="${H - 8}" text-anchor="middle">fault latency (bucket lower bound, log2 scale)</text>`;
  out += `<text class="axis-title" transform="translate(14 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle">faults</text>`;
  return out + '</svg>';
}

// ---------------------------------------------------------------------------------------------
// Throughput

function throughputDesc(series: Series<Sample>[], pts: Sample[][], inSeconds: boolean): string {
  const one = (p: Sample[]) => {
    if (p.length === 0) return 'no samples';
    const peak = p.reduce((a, b) => (b.faultsPerSecond > a.faultsPerSecond ? b : a));
    const mean = p.reduce((s, x) => s + x.faultsPerSecond, 0) / p.length;
    return (
      `${p.length} samples from ${msLabel(p[0].tMs, inSeconds)} to ${msLabel(p[p.length - 1].tMs, inSeconds)}; ` +
      `mean ${compactNum(mean)} faults/s, peak ${compactNum(peak.faultsPerSecond)} faults/s at ${msLabel(peak.tMs, inSeconds)}`
    );
  };
  return `${pts.map((p, i) => seriesPrefix(series[i]) + one(p)).join('; ')}.`;
}

/** Line chart of faults per second over time: one line per series. */
export function throughputChart(series: Series<Sample>[]): string {
  const id = 'chart-throughput';
  const title = 'Throughput over time';
  const pts = series.map((s) =>
    s.data
      .filter((p) => Number.isFinite(p.tMs) && Number.isFinite(p.faultsPerSecond))
      .slice()
      .sort((a, b) => a.tMs - b.tMs),
  );
  const flat = pts.flat();
  if (flat.length === 0) return svgOpen(id, 300, title, 'No throughput samples were recorded.') + noData(300) + '</svg>';
  const { legendSvg, top } = plotTop(series, W - 24);
  const m = { top, right: 24, bottom: 52, left: 64 };
  const H = top + 228 + m.bottom;
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const tMin = Math.min(0, ...flat.map((p) => p.tMs));
  let tMax = Math.max(...flat.map((p) => p.tMs));
  if (!(tMax > tMin)) tMax = tMin + 1000;
  // A lone sample gets room to its right so it does not sit on the frame.
  else if (flat.length === 1) tMax += Math.max(100, 0.25 * (tMax - tMin));
  const xs = niceTicks(tMin, tMax, 6);
  const maxRate = Math.max(0, ...flat.map((p) => p.faultsPerSecond));
  const ys = niceTicks(0, maxRate > 0 ? maxRate * 1.08 : 1);
  const x = (t: number) => m.left + ((t - xs.lo) / (xs.hi - xs.lo)) * plotW;
  const y = (v: number) => m.top + plotH - ((v - ys.lo) / (ys.hi - ys.lo)) * plotH;
  const inSeconds = xs.hi - xs.lo >= 2000;
  let out = svgOpen(id, H, title, throughputDesc(series, pts, inSeconds)) + legendSvg;
  out += yAxis(ys.ticks, y, m.left, W - m.right, compactNum);
  for (const t of xs.ticks) {
    const xx = px(x(t));
    out += `<line class="tick-mark" x1="${xx}" x2="${xx}" y1="${m.top + plotH}" y2="${m.top + plotH + 4}"/>`;
    out += `<text class="tick" x="${xx}" y="${m.top + plotH + 18}" text-anchor="middle">${escapeHtml(msLabel(t, inSeconds))}</text>`;
  }
  pts.forEach((p, i) => {
    if (p.length > 0) out += throughputLine(series, i, p, { x, y, base: y(0), inSeconds, bottom: m.top + plotH });
  });
  out += `<line class="axis" x1="${m.left}" x2="${W - m.right}" y1="${m.top + plotH}" y2="${m.top + plotH}"/>`;
  out += `<line class="axis" x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + plotH}"/>`;
  out += `<text class="axis-title" x="${m.left + plotW / 2}" y="${H - 8}" text-anchor="middle">time since start</text>`;
  out += `<text class="axis-title" transform="translate(14 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle">faults / s</text>`;
  return out + '</svg>';
}

interface LineScale {
  x: (t: number) => number;
  y: (v: number) => number;
  base: number;
  inSeconds: boolean;
  bottom: number;
}

/** One series' line; a single run also gets the area under it, and a lone sample its value. */
function throughputLine(series: Series<Sample>[], i: number, pts: Sample[], s: LineScale): string {
  const single = !labelled(series);
  const coords = pts.map((p) => `${px(s.x(p.tMs))},${px(s.y(p.faultsPerSecond))}`);
  let out = '';
  if (single && pts.length > 1) {
    const base = px(s.base);
    out += `<path class="area" d="M${px(s.x(pts[0].tMs))},${base}L${coords.join('L')}L${px(s.x(pts[pts.length - 1].tMs))},${base}Z"/>`;
  }
  out += `<polyline ${seriesAttrs(series, i, 'line')} points="${coords.join(' ')}"/>`;
  if (single && pts.length === 1) {
    const cx = px(s.x(pts[0].tMs));
    const cy = px(s.y(pts[0].faultsPerSecond));
    out += `<line class="drop" x1="${cx}" x2="${cx}" y1="${cy}" y2="${s.bottom}"/>`;
    out += `<text class="value" x="${px(s.x(pts[0].tMs) + 8)}" y="${px(s.y(pts[0].faultsPerSecond) - 8)}">${escapeHtml(`${compactNum(pts[0].faultsPerSecond)} faults/s`)}</text>`;
  }
  if (pts.length <= 60) {
    const r = pts.length === 1 ? (single ? 5 : 4) : 2.5;
    for (const p of pts) {
      const tip = `${seriesPrefix(series[i])}${msLabel(p.tMs, s.inSeconds)}: ${compactNum(p.faultsPerSecond)} faults/s`;
      out +=
        `<circle ${seriesAttrs(series, i, 'dot')} cx="${px(s.x(p.tMs))}" cy="${px(s.y(p.faultsPerSecond))}" r="${r}">` +
        `<title>${escapeHtml(tip)}</title></circle>`;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Lock waits

/**
 * The lock classes to draw, most waited-on first, each with every series' wait. Several runs
 * draw only classes some run waited on or contended; the rest are named under the chart.
 */
function lockRows(series: Series<LockWait>[]): { rows: Array<{ lock: string; per: Array<LockWait | undefined> }>; idle: string[] } {
  const clean = series.map((s) => s.data.filter((l) => Number.isFinite(l.waitMs)));
  const names = [...new Set(clean.flat().map((l) => l.lock))];
  const all = names.map((lock) => ({ lock, per: clean.map((d) => d.find((l) => l.lock === lock)) }));
  const total = (r: (typeof all)[number]) => r.per.reduce((s, l) => s + (l?.waitMs ?? 0), 0);
  all.sort((a, b) => total(b) - total(a));
  if (!labelled(series)) return { rows: all, idle: [] };
  const busy = (r: (typeof all)[number]) => r.per.some((l) => l !== undefined && (l.waitMs > 0 || l.contended > 0));
  const rows = all.filter(busy);
  return rows.length === 0 ? { rows: all, idle: [] } : { rows, idle: all.filter((r) => !busy(r)).map((r) => r.lock) };
}

function lockDesc(series: Series<LockWait>[], rows: ReturnType<typeof lockRows>['rows']): string {
  return (
    series
      .map((s, i) => {
        const mine = rows.map((r) => r.per[i]).filter((l): l is LockWait => l !== undefined);
        if (mine.length === 0) return `${seriesPrefix(s)}no lock waits`;
        const top = mine.reduce((a, b) => (b.waitMs > a.waitMs ? b : a));
        const sum = mine.reduce((a, l) => a + l.waitMs, 0);
        return (
          `${seriesPrefix(s)}${mine.length} lock classes waited ${trimNum(sum, 2)} ms in total; ` +
          `the most waited-on is ${top.lock} with ${trimNum(top.waitMs, 2)} ms over ${top.contended} contended acquisitions`
        );
      })
      .join('; ') + '.'
  );
}

/** Horizontal bars of lock wait time per lock class (one per series), labelled with how often each was contended. */
export function lockWaitsChart(series: Series<LockWait>[]): string {
  const id = 'chart-lock-waits';
  const title = 'Lock wait times';
  const { rows, idle } = lockRows(series);
  if (rows.length === 0) return svgOpen(id, 160, title, 'No lock waits were recorded.') + noData(160) + '</svg>';
  const n = series.length;
  const single = !labelled(series);
  const pitch = single ? 30 : 16;
  const barH = single ? 21 : 13;
  const groupH = single ? 30 : n * pitch + 14;
  const maxLabel = 28;
  const label = (s: string) => (s.length > maxLabel ? `${s.slice(0, maxLabel - 1)}…` : s);
  const longest = Math.max(...rows.map((r) => label(r.lock).length));
  const { legendSvg, top } = plotTop(series, W - 16);
  const m = {
    top: single ? 12 : top,
    right: 190,
    bottom: idle.length > 0 ? 64 : 44,
    left: Math.min(240, Math.max(80, 16 + longest * 7.2)),
  };
  const plotW = W - m.left - m.right;
  const plotH = rows.length * groupH;
  const H = m.top + plotH + m.bottom;
  const maxWait = Math.max(0, ...rows.flatMap((r) => r.per.map((l) => l?.waitMs ?? 0)));
  const xs = niceTicks(0, maxWait > 0 ? maxWait : 1, 5);
  const x = (v: number) => m.left + (Math.max(0, v) / xs.hi) * plotW;
  let out = svgOpen(id, H, title, lockDesc(series, rows)) + legendSvg;
  for (const t of xs.ticks) {
    const xx = px(x(t));
    out += `<line class="grid" x1="${xx}" x2="${xx}" y1="${m.top}" y2="${m.top + plotH}"/>`;
    out += `<text class="tick" x="${xx}" y="${m.top + plotH + 16}" text-anchor="middle">${escapeHtml(`${trimNum(t, 3)}ms`)}</text>`;
  }
  rows.forEach((r, g) => {
    const gTop = m.top + g * groupH;
    out += `<text class="label" x="${m.left - 8}" y="${px(gTop + groupH / 2)}" text-anchor="end" dominant-baseline="middle">${escapeHtml(label(r.lock))}</text>`;
    r.per.forEach((l, i) => {
      if (l === undefined) return;
      const by = gTop + (groupH - n * pitch + (pitch - barH)) / 2 + i * pitch;
      const w = Math.max(l.waitMs > 0 ? 1 : 0, x(l.waitMs) - m.left);
      // In a comparison, a run that never waited on a class its neighbours did says so in one word.
      const text = !single && l.waitMs === 0 && l.contended === 0 ? 'none' : `${trimNum(l.waitMs, 2)} ms · ${l.contended} contended`;
      out +=
        `<rect ${seriesAttrs(series, i, 'bar')} x="${m.left}" y="${px(by)}" width="${px(w)}" height="${barH}">` +
        `<title>${escapeHtml(`${seriesPrefix(series[i])}${r.lock}: ${text}`)}</title></rect>`;
      out += `<text class="value" x="${px(m.left + w + 6)}" y="${px(by + barH / 2)}" dominant-baseline="middle">${escapeHtml(text)}</text>`;
    });
  });
  out += `<line class="axis" x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + plotH}"/>`;
  out += `<text class="axis-title" x="${m.left + plotW / 2}" y="${m.top + plotH + 36}" text-anchor="middle">time spent waiting (ms)</text>`;
  if (idle.length > 0) {
    out += `<text class="tick" x="${m.left}" y="${H - 8}">${escapeHtml(`No wait or contention in any run: ${idle.join(', ')}.`)}</text>`;
  }
  return out + '</svg>';
}
