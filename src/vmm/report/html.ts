// Renders a run's ReportData as one self-contained HTML page: inline CSS, inline SVG charts drawn
// here in TypeScript, no scripts, no external URLs, no web fonts. A Content-Security-Policy meta tag
// forbids the page from fetching anything, so a report that looks right offline is right everywhere.
//
// Charts (each an <svg role="img"> with a <title> and a stable id):
//   #chart-fault-latency  bars of the log2 fault latency histogram (one rect.bar per non-empty bucket)
//   #chart-throughput     faults per second over time (one polyline.line point per sample)
//   #chart-lock-waits     horizontal bars of wait time per lock class, labelled with contended counts
// With no data a chart still renders its <svg>, showing a "no data" text.

import { writeOutput } from '../io/outputs.js';
import type { ReportData, ReportTable } from './model.js';

// ---------------------------------------------------------------------------------------------
// Text helpers

/** Escapes a value for HTML text and attribute values (double- or single-quoted). */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Trims a number to at most `digits` decimals and drops trailing zeros: 1.50 -> "1.5". */
function trimNum(value: number, digits: number): string {
  if (!Number.isFinite(value)) return String(value);
  const s = value.toFixed(digits);
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** Short form for axis labels: 2 significant-ish digits below 10, integers above. */
function shortNum(value: number): string {
  const a = Math.abs(value);
  return a >= 10 ? String(Math.round(value)) : trimNum(value, 1);
}

/** Humanises a duration in nanoseconds for axis labels: 1024 -> "1µs", 4096 -> "4.1µs". */
export function humanNs(ns: number): string {
  const a = Math.abs(ns);
  if (a >= 1e9) return `${shortNum(ns / 1e9)}s`;
  if (a >= 1e6) return `${shortNum(ns / 1e6)}ms`;
  if (a >= 1e3) return `${shortNum(ns / 1e3)}µs`;
  return `${shortNum(ns)}ns`;
}

/** Compact count/rate: 1200 -> "1.2k", 3_400_000 -> "3.4M". */
function compactNum(value: number): string {
  const a = Math.abs(value);
  if (a >= 1e9) return `${shortNum(value / 1e9)}G`;
  if (a >= 1e6) return `${shortNum(value / 1e6)}M`;
  if (a >= 1e3) return `${shortNum(value / 1e3)}k`;
  return Number.isInteger(value) ? String(value) : trimNum(value, 2);
}

/** Milliseconds for labels, switching to seconds when the scale is large. */
function msLabel(ms: number, inSeconds: boolean): string {
  return inSeconds ? `${trimNum(ms / 1000, 2)}s` : `${trimNum(ms, 2)}ms`;
}

/** Formats a table cell: numbers keep full precision but lose float noise. */
function cellText(value: string | number): string {
  if (typeof value === 'number') {
    if (Number.isInteger(value) || !Number.isFinite(value)) return String(value);
    return String(Number(value.toPrecision(12)));
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Scales

/** A "nice" step (1, 2 or 5 times a power of ten) near raw. */
function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const exp = Math.floor(Math.log10(raw));
  const base = 10 ** exp;
  const f = raw / base;
  const nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nf * base;
}

/** Ticks from 0 (or min) up to a nice maximum covering max; returns the ticks and that maximum. */
function niceTicks(min: number, max: number, count = 5): { ticks: number[]; lo: number; hi: number } {
  if (!(max > min)) max = min + 1;
  const step = niceStep((max - min) / count);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let i = 0; lo + i * step <= hi + step * 1e-9; i++) ticks.push(Number((lo + i * step).toPrecision(12)));
  return { ticks, lo, hi };
}

/** Rounds an SVG coordinate to 0.1px to keep the markup short. */
function px(v: number): string {
  return trimNum(v, 1);
}

// ---------------------------------------------------------------------------------------------
// SVG pieces

const W = 960;

function svgOpen(id: string, height: number, title: string, desc: string): string {
  return (
    `<svg id="${id}" class="chart" role="img" aria-labelledby="${id}-title ${id}-desc" ` +
    `xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}">` +
    `<title id="${id}-title">${escapeHtml(title)}</title>` +
    `<desc id="${id}-desc">${escapeHtml(desc)}</desc>`
  );
}

function noData(height: number): string {
  return (
    `<rect class="frame" x="1" y="1" width="${W - 2}" height="${height - 2}" rx="6"/>` +
    `<text class="no-data" x="${W / 2}" y="${height / 2}" text-anchor="middle" dominant-baseline="middle">no data</text>`
  );
}

/** Horizontal grid lines and left-hand tick labels for a vertical value axis. */
function yAxis(ticks: number[], y: (v: number) => number, left: number, right: number, fmt: (v: number) => string): string {
  let out = '';
  for (const t of ticks) {
    const yy = px(y(t));
    out += `<line class="grid" x1="${left}" x2="${right}" y1="${yy}" y2="${yy}"/>`;
    out += `<text class="tick" x="${left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${escapeHtml(fmt(t))}</text>`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Charts

/** Bar chart of the log2 fault latency histogram. */
export function faultLatencyChart(buckets: ReportData['faultLatency']): string {
  const id = 'chart-fault-latency';
  const H = 300;
  const title = 'Fault latency histogram';
  const sorted = buckets
    .filter((b) => Number.isFinite(b.lowNs) && Number.isFinite(b.count))
    .slice()
    .sort((a, b) => a.lowNs - b.lowNs);
  // Drop empty buckets at either end; keep empty ones in between so the log2 axis stays even.
  const first = sorted.findIndex((b) => b.count > 0);
  let last = sorted.length - 1;
  while (last >= 0 && !(sorted[last].count > 0)) last--;
  const shown = first < 0 ? [] : sorted.slice(first, last + 1);
  const total = shown.reduce((s, b) => s + b.count, 0);
  if (shown.length === 0) {
    return svgOpen(id, H, title, 'No fault latency samples were recorded.') + noData(H) + '</svg>';
  }
  const m = { top: 20, right: 16, bottom: 52, left: 56 };
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const maxCount = Math.max(...shown.map((b) => b.count));
  const { ticks, hi } = niceTicks(0, maxCount);
  const y = (v: number) => m.top + plotH - (v / hi) * plotH;
  // Slots are capped so a handful of buckets does not become a wall of colour; the group is centred.
  const slot = Math.min(plotW / shown.length, 72);
  const x0 = m.left + (plotW - slot * shown.length) / 2;
  const barW = Math.max(1, slot * 0.8);
  const labelEvery = Math.max(1, Math.ceil(48 / slot));
  const desc =
    `${total} faults in ${shown.length} log2 latency buckets from ${humanNs(shown[0].lowNs)} ` +
    `to ${humanNs(shown[shown.length - 1].highNs)}; the fullest bucket holds ${maxCount}.`;
  let out = svgOpen(id, H, title, desc);
  out += yAxis(ticks, y, m.left, W - m.right, compactNum);
  shown.forEach((b, i) => {
    const cx = x0 + i * slot + slot / 2;
    if (b.count > 0) {
      const top = y(b.count);
      const h = Math.max(1, m.top + plotH - top);
      out +=
        `<rect class="bar" x="${px(cx - barW / 2)}" y="${px(m.top + plotH - h)}" width="${px(barW)}" height="${px(h)}">` +
        `<title>${escapeHtml(`[${humanNs(b.lowNs)}, ${humanNs(b.highNs)}): ${b.count} faults`)}</title></rect>`;
      if (slot >= 30) {
        out += `<text class="value" x="${px(cx)}" y="${px(m.top + plotH - h - 4)}" text-anchor="middle">${escapeHtml(compactNum(b.count))}</text>`;
      }
    }
    if (i % labelEvery === 0) {
      out += `<text class="tick" x="${px(cx)}" y="${m.top + plotH + 16}" text-anchor="middle">${escapeHtml(humanNs(b.lowNs))}</text>`;
    }
  });
  out += `<line class="axis" x1="${m.left}" x2="${W - m.right}" y1="${m.top + plotH}" y2="${m.top + plotH}"/>`;
  out += `<text class="axis-title" x="${m.left + plotW / 2}" y="${H - 8}" text-anchor="middle">fault latency (bucket lower bound, log2 scale)</text>`;
  out += `<text class="axis-title" transform="translate(14 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle">faults</text>`;
  return out + '</svg>';
}

/** Line chart of faults per second over time. */
export function throughputChart(samples: ReportData['throughput']): string {
  const id = 'chart-throughput';
  const H = 300;
  const title = 'Throughput over time';
  const pts = samples
    .filter((s) => Number.isFinite(s.tMs) && Number.isFinite(s.faultsPerSecond))
    .slice()
    .sort((a, b) => a.tMs - b.tMs);
  if (pts.length === 0) {
    return svgOpen(id, H, title, 'No throughput samples were recorded.') + noData(H) + '</svg>';
  }
  const m = { top: 20, right: 24, bottom: 52, left: 64 };
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const tMin = Math.min(0, pts[0].tMs);
  let tMax = pts[pts.length - 1].tMs;
  if (!(tMax > tMin)) tMax = tMin + 1000;
  // A lone sample gets room to its right so it does not sit on the frame.
  else if (pts.length === 1) tMax += Math.max(100, 0.25 * (tMax - tMin));
  const xs = niceTicks(tMin, tMax, 6);
  const maxRate = Math.max(0, ...pts.map((p) => p.faultsPerSecond));
  const ys = niceTicks(0, maxRate > 0 ? maxRate * 1.08 : 1);
  const x = (t: number) => m.left + ((t - xs.lo) / (xs.hi - xs.lo)) * plotW;
  const y = (v: number) => m.top + plotH - ((v - ys.lo) / (ys.hi - ys.lo)) * plotH;
  const inSeconds = xs.hi - xs.lo >= 2000;
  const peak = pts.reduce((a, b) => (b.faultsPerSecond > a.faultsPerSecond ? b : a));
  const mean = pts.reduce((s, p) => s + p.faultsPerSecond, 0) / pts.length;
  const desc =
    `${pts.length} samples from ${msLabel(pts[0].tMs, inSeconds)} to ${msLabel(pts[pts.length - 1].tMs, inSeconds)}; ` +
    `mean ${compactNum(mean)} faults/s, peak ${compactNum(peak.faultsPerSecond)} faults/s at ${msLabel(peak.tMs, inSeconds)}.`;
  let out = svgOpen(id, H, title, desc);
  out += yAxis(ys.ticks, y, m.left, W - m.right, compactNum);
  for (const t of xs.ticks) {
    const xx = px(x(t));
    out += `<line class="tick-mark" x1="${xx}" x2="${xx}" y1="${m.top + plotH}" y2="${m.top + plotH + 4}"/>`;
    out += `<text class="tick" x="${xx}" y="${m.top + plotH + 18}" text-anchor="middle">${escapeHtml(msLabel(t, inSeconds))}</text>`;
  }
  const coords = pts.map((p) => `${px(x(p.tMs))},${px(y(p.faultsPerSecond))}`);
  if (pts.length > 1) {
    const base = px(y(0));
    out += `<path class="area" d="M${px(x(pts[0].tMs))},${base}L${coords.join('L')}L${px(x(pts[pts.length - 1].tMs))},${base}Z"/>`;
  }
  out += `<polyline class="line" points="${coords.join(' ')}"/>`;
  if (pts.length === 1) {
    const cx = px(x(pts[0].tMs));
    const cy = px(y(pts[0].faultsPerSecond));
    out += `<line class="drop" x1="${cx}" x2="${cx}" y1="${cy}" y2="${m.top + plotH}"/>`;
    out += `<text class="value" x="${px(x(pts[0].tMs) + 8)}" y="${px(y(pts[0].faultsPerSecond) - 8)}">${escapeHtml(`${compactNum(pts[0].faultsPerSecond)} faults/s`)}</text>`;
  }
  if (pts.length <= 60) {
    for (const p of pts) {
      out +=
        `<circle class="dot" cx="${px(x(p.tMs))}" cy="${px(y(p.faultsPerSecond))}" r="${pts.length === 1 ? 5 : 2.5}">` +
        `<title>${escapeHtml(`${msLabel(p.tMs, inSeconds)}: ${compactNum(p.faultsPerSecond)} faults/s`)}</title></circle>`;
    }
  }
  out += `<line class="axis" x1="${m.left}" x2="${W - m.right}" y1="${m.top + plotH}" y2="${m.top + plotH}"/>`;
  out += `<line class="axis" x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + plotH}"/>`;
  out += `<text class="axis-title" x="${m.left + plotW / 2}" y="${H - 8}" text-anchor="middle">time since start</text>`;
  out += `<text class="axis-title" transform="translate(14 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle">faults / s</text>`;
  return out + '</svg>';
}

/** Horizontal bars of lock wait time per lock class, labelled with how often each was contended. */
export function lockWaitsChart(locks: ReportData['lockWaits']): string {
  const id = 'chart-lock-waits';
  const title = 'Lock wait times';
  const rows = locks
    .filter((l) => Number.isFinite(l.waitMs))
    .slice()
    .sort((a, b) => b.waitMs - a.waitMs);
  if (rows.length === 0) {
    const H = 160;
    return svgOpen(id, H, title, 'No lock waits were recorded.') + noData(H) + '</svg>';
  }
  const rowH = 30;
  const maxLabel = 28;
  const label = (s: string) => (s.length > maxLabel ? `${s.slice(0, maxLabel - 1)}…` : s);
  const longest = Math.max(...rows.map((r) => label(r.lock).length));
  const m = { top: 12, right: 190, bottom: 44, left: Math.min(240, Math.max(80, 16 + longest * 7.2)) };
  const plotW = W - m.left - m.right;
  const plotH = rows.length * rowH;
  const H = m.top + plotH + m.bottom;
  const maxWait = Math.max(0, ...rows.map((r) => r.waitMs));
  const xs = niceTicks(0, maxWait > 0 ? maxWait : 1, 5);
  const x = (v: number) => m.left + (Math.max(0, v) / xs.hi) * plotW;
  const totalWait = rows.reduce((s, r) => s + r.waitMs, 0);
  const desc =
    `${rows.length} lock classes waited ${trimNum(totalWait, 2)} ms in total; ` +
    `the most waited-on is ${rows[0].lock} with ${trimNum(rows[0].waitMs, 2)} ms over ${rows[0].contended} contended acquisitions.`;
  let out = svgOpen(id, H, title, desc);
  for (const t of xs.ticks) {
    const xx = px(x(t));
    out += `<line class="grid" x1="${xx}" x2="${xx}" y1="${m.top}" y2="${m.top + plotH}"/>`;
    out += `<text class="tick" x="${xx}" y="${m.top + plotH + 16}" text-anchor="middle">${escapeHtml(`${trimNum(t, 3)}ms`)}</text>`;
  }
  rows.forEach((r, i) => {
    const cy = m.top + i * rowH + rowH / 2;
    const w = Math.max(r.waitMs > 0 ? 1 : 0, x(r.waitMs) - m.left);
    const text = `${trimNum(r.waitMs, 2)} ms · ${r.contended} contended`;
    out += `<text class="label" x="${m.left - 8}" y="${px(cy)}" text-anchor="end" dominant-baseline="middle">${escapeHtml(label(r.lock))}</text>`;
    out +=
      `<rect class="bar" x="${m.left}" y="${px(cy - rowH * 0.35)}" width="${px(w)}" height="${px(rowH * 0.7)}">` +
      `<title>${escapeHtml(`${r.lock}: ${text}`)}</title></rect>`;
    out += `<text class="value" x="${px(m.left + w + 6)}" y="${px(cy)}" dominant-baseline="middle">${escapeHtml(text)}</text>`;
  });
  out += `<line class="axis" x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + plotH}"/>`;
  out += `<text class="axis-title" x="${m.left + plotW / 2}" y="${H - 8}" text-anchor="middle">time spent waiting (ms)</text>`;
  return out + '</svg>';
}

// ---------------------------------------------------------------------------------------------
// Page

const CSS = `
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff;
  --panel: #f6f8fa; --accent: #2f6fb3; --accent-soft: rgba(47, 111, 179, 0.14); --warm: #c2571a; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.meta { color: var(--muted); margin: 0 0 16px; }
.meta span + span::before { content: " · "; }
pre.command { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 12px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; margin: 0 0 16px; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 13.5px; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0;
  background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; }
dl.summary dt { color: var(--muted); }
dl.summary dd { margin: 0; font-weight: 600; }
figure { margin: 0 0 20px; border: 1px solid var(--line); border-radius: 8px; padding: 12px; }
figcaption { font-weight: 600; margin: 0 0 6px; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart text { font-family: system-ui, "DejaVu Sans", sans-serif; font-size: 12px; fill: var(--fg); }
svg.chart .tick { fill: var(--muted); font-size: 11px; }
svg.chart .axis-title { fill: var(--muted); font-size: 12px; }
svg.chart .grid { stroke: #eaeef2; stroke-width: 1; }
svg.chart .axis, svg.chart .tick-mark { stroke: #8c959f; stroke-width: 1; }
svg.chart .bar { fill: var(--accent); }
svg.chart .bar:hover { fill: #1f5591; }
svg.chart .value { font-size: 11px; fill: var(--fg); }
svg.chart .line { fill: none; stroke: var(--accent); stroke-width: 2; stroke-linejoin: round; stroke-linecap: round; }
svg.chart .area { fill: var(--accent-soft); stroke: none; }
svg.chart .dot { fill: #fff; stroke: var(--accent); stroke-width: 1.5; }
svg.chart .dot:only-of-type { fill: var(--accent); }
svg.chart .drop { stroke: var(--accent); stroke-width: 1; stroke-dasharray: 3 3; }
svg.chart .frame { fill: var(--panel); stroke: var(--line); stroke-dasharray: 4 4; }
svg.chart .no-data { fill: var(--muted); font-size: 16px; font-style: italic; }
#chart-lock-waits .bar { fill: var(--warm); }
#chart-lock-waits .bar:hover { fill: #9a4312; }
.table-wrap { overflow-x: auto; margin: 0 0 6px; }
table { border-collapse: collapse; min-width: 50%; font-size: 14px; }
caption { text-align: left; font-weight: 600; padding: 0 0 6px; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--panel); border-bottom: 2px solid var(--line); white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note { color: var(--muted); font-size: 13.5px; margin: 4px 0 24px; }
p.empty, td.empty { color: var(--muted); font-style: italic; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
@media print { figure, table { break-inside: avoid; } main { max-width: none; } }
`
  .replace(/\n\s*/g, '\n')
  .trim();

function renderTable(table: ReportTable, index: number): string {
  const id = `table-${index + 1}`;
  // A column whose cells are all numbers is right-aligned, header included.
  const width = Math.max(table.columns.length, ...table.rows.map((r) => r.length));
  const numeric = Array.from(
    { length: width },
    (_, c) => table.rows.length > 0 && table.rows.every((r) => r[c] === undefined || typeof r[c] === 'number'),
  );
  const cls = (c: number) => (numeric[c] ? ' class="num"' : '');
  const head = table.columns.map((c, i) => `<th scope="col"${cls(i)}>${escapeHtml(c)}</th>`).join('');
  const body = table.rows
    .map((row) => {
      const cells = row.map((v, i) => `<td${cls(i)}>${escapeHtml(cellText(v))}</td>`).join('');
      return `<tr>${cells}</tr>`;
    })
    .join('\n');
  const empty = table.rows.length === 0 ? `<tr><td colspan="${Math.max(1, table.columns.length)}" class="empty">no rows</td></tr>` : '';
  const note = table.note ? `\n<p class="note">${escapeHtml(table.note)}</p>` : '';
  return (
    `<section class="table" id="${id}">\n<div class="table-wrap"><table>\n` +
    `<caption>${escapeHtml(table.title)}</caption>\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}${empty}\n</tbody>\n</table></div>${note}\n</section>`
  );
}

function figure(caption: string, svg: string): string {
  return `<figure>\n<figcaption>${escapeHtml(caption)}</figcaption>\n${svg}\n</figure>`;
}

/** Renders one self-contained HTML document for a run. Every string from data is escaped. */
export function renderReport(data: ReportData): string {
  const meta: string[] = [];
  if (data.seed !== undefined) meta.push(`<span>seed <strong>${escapeHtml(data.seed)}</strong></span>`);
  meta.push(`<span>generated <time datetime="${escapeHtml(data.generatedAt)}">${escapeHtml(data.generatedAt)}</time></span>`);
  const summary =
    data.summary.length > 0
      ? `<dl class="summary">\n${data.summary.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(cellText(v))}</dd>`).join('\n')}\n</dl>`
      : `<p class="empty">No summary.</p>`;
  const tables = data.tables.length > 0 ? data.tables.map(renderTable).join('\n') : `<p class="empty">No tables.</p>`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="gmem-sandbox">
<title>${escapeHtml(data.title)}</title>
<style>
${CSS}
</style>
</head>
<body>
<main>
<header>
<h1>${escapeHtml(data.title)}</h1>
<p class="meta">${meta.join('')}</p>
<pre class="command"><code>${escapeHtml(data.command)}</code></pre>
</header>
<section id="summary">
<h2>Summary</h2>
${summary}
</section>
<section id="charts">
<h2>Charts</h2>
${figure('Fault latency (log2 buckets)', faultLatencyChart(data.faultLatency))}
${figure('Throughput (faults per second)', throughputChart(data.throughput))}
${figure('Lock wait time by lock class', lockWaitsChart(data.lockWaits))}
</section>
<section id="tables">
<h2>Tables</h2>
${tables}
</section>
<footer>Generated by gmem-sandbox. This page is self-contained: no scripts, no network.</footer>
</main>
</body>
</html>
`;
}

/** Writes the rendered report, creating parent directories as needed; false (said on stderr) if it could not. */
export function writeReport(file: string, data: ReportData): boolean {
  return writeOutput(file, () => renderReport(data));
}
