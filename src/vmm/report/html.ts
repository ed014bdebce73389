// Renders a run's ReportData as one self-contained HTML page: inline CSS, inline SVG charts drawn
// here in TypeScript (charts.ts), no scripts, no external URLs, no web fonts. A
// Content-Security-Policy meta tag forbids the page from fetching anything, so a report that
// looks right offline is right everywhere.
//
// Laid out to be read in a window 1280 px wide without sideways scrolling: table headers and long
// cells wrap, an experiment's charts name each kernel version in a legend, its explanations are
// one paragraph per kernel version, and a page-owner map keeps its rows whole.

import { writeOutput } from '../io/outputs.js';
import { faultLatencyChart, lockWaitsChart, throughputChart } from './charts.js';
import type { ChartSeries, PageMap, ReportData, ReportTable } from './model.js';
import { PALETTE, type Series, escapeHtml, seriesCss } from './svg.js';

export { escapeHtml, humanNs } from './svg.js';
export { faultLatencyChart, lockWaitsChart, throughputChart } from './charts.js';

/** Formats a table cell: numbers keep full precision but lose float noise. */
function cellText(value: string | number): string {
  if (typeof value === 'number') {
    if (Number.isInteger(value) || !Number.isFinite(value)) return String(value);
    return String(Number(value.toPrecision(12)));
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Page

const CSS = `
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff;
  --panel: #f6f8fa; --accent: #2f6fb3; --accent-soft: rgba(47, 111, 179, 0.14); --warm: #c2571a; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
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
svg.chart .bar:not([data-series]):hover { fill: #1f5591; }
svg.chart .bar[data-series]:hover { opacity: 0.75; }
svg.chart .value { font-size: 11px; fill: var(--fg); }
svg.chart .line { fill: none; stroke: var(--accent); stroke-width: 2; stroke-linejoin: round; stroke-linecap: round; }
svg.chart .area { fill: var(--accent-soft); stroke: none; }
svg.chart .dot { fill: #fff; stroke: var(--accent); stroke-width: 1.5; }
svg.chart .dot:only-of-type { fill: var(--accent); }
svg.chart .drop { stroke: var(--accent); stroke-width: 1; stroke-dasharray: 3 3; }
svg.chart .frame { fill: var(--panel); stroke: var(--line); stroke-dasharray: 4 4; }
svg.chart .no-data { fill: var(--muted); font-size: 16px; font-style: italic; }
#chart-lock-waits .bar:not([data-series]) { fill: var(--warm); }
#chart-lock-waits .bar:not([data-series]):hover { fill: #9a4312; }
svg.chart .legend-label { font-size: 12.5px; }
${seriesCss()}
.table-wrap { overflow-x: auto; margin: 0 0 6px; }
table { border-collapse: collapse; min-width: 50%; font-size: 14px; }
caption { text-align: left; font-weight: 600; padding: 0 0 6px; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--panel); border-bottom: 2px solid var(--line); vertical-align: bottom; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
td.long { overflow-wrap: anywhere; }
p.explanation { font-size: 14px; margin: 0 0 10px; max-width: 110ch; }
div.explanations { margin: 10px 0 24px; }
pre.owners { margin: 0; font-size: 13px; line-height: 1.35; white-space: pre; overflow-x: auto; }
pre.owners .row::before { content: attr(data-first); display: inline-block; width: 5ch; margin-right: 1ch;
  text-align: right; color: var(--muted); }
.owners .none, .owner-key .none { color: #8c959f; }
${PALETTE.map((c, i) => `.owners .vm${i}, .owner-key .vm${i} { color: ${c}; font-weight: 600; }`).join('\n')}
p.note { color: var(--muted); font-size: 13.5px; margin: 4px 0 24px; }
p.empty, td.empty { color: var(--muted); font-style: italic; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
@media print { figure, table { break-inside: avoid; } main { max-width: none; } }
`
  .replace(/\n\s*/g, '\n')
  .trim();

/** A text cell with a word too long to wrap at spaces (a JSON value, a path) may break anywhere. */
function cellClass(v: string | number, numeric: boolean): string {
  if (numeric) return ' class="num"';
  return typeof v === 'string' && /\S{32}/.test(v) ? ' class="long"' : '';
}

/** One paragraph per compared run, each opening with its lead in bold. */
function paragraphs(table: ReportTable): string {
  if (!table.paragraphs?.length) return '';
  const ps = table.paragraphs.map((p) => `<p class="explanation"><strong>${escapeHtml(p.lead)}</strong> ${escapeHtml(p.text)}</p>`);
  return `\n<div class="explanations">\n${ps.join('\n')}\n</div>`;
}

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
      const cells = row.map((v, i) => `<td${cellClass(v, numeric[i])}>${escapeHtml(cellText(v))}</td>`).join('');
      return `<tr>${cells}</tr>`;
    })
    .join('\n');
  const empty = table.rows.length === 0 ? `<tr><td colspan="${Math.max(1, table.columns.length)}" class="empty">no rows</td></tr>` : '';
  const note = table.note ? `\n<p class="note">${escapeHtml(table.note)}</p>` : '';
  return (
    `<section class="table" id="${id}">\n<div class="table-wrap"><table>\n` +
    `<caption>${escapeHtml(table.title)}</caption>\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}${empty}\n</tbody>\n</table></div>` +
    `${paragraphs(table)}${note}\n</section>`
  );
}

/** Class of a page-owner character: the VM index's colour, or muted for no VM. */
function ownerClass(ch: string): string {
  return /^[0-9]$/.test(ch) ? `vm${Number(ch) % PALETTE.length}` : 'none';
}

/** One map as whole rows of `rowPages` characters, each row prefixed (in CSS) by its first page. */
function ownerRows(pages: string, rowPages: number): string {
  const rows: string[] = [];
  for (let first = 0; first < pages.length; first += rowPages) {
    // Runs of one owner share a span, so a map of thousands of pages stays small.
    const runs = pages.slice(first, first + rowPages).match(/(.)\1*/g) ?? [];
    const body = runs.map((r) => `<span class="${ownerClass(r[0])}">${escapeHtml(r)}</span>`).join('');
    rows.push(`<span class="row" data-first="${first}">${body}</span>`);
  }
  return rows.join('\n');
}

function renderPageMap(map: PageMap, index: number): string {
  const rowPages = Math.max(1, Math.floor(map.rowPages));
  const body = map.maps
    .map((m) => `<tr><td>${escapeHtml(m.name)}</td><td><pre class="owners">${ownerRows(m.pages, rowPages)}</pre></td></tr>`)
    .join('\n');
  const key = map.key.map(([ch, what]) => `<span class="${ownerClass(ch)}"><code>${escapeHtml(ch)}</code> ${escapeHtml(what)}</span>`);
  return (
    `<section class="page-map" id="page-map-${index + 1}">\n<div class="table-wrap"><table>\n` +
    `<caption>${escapeHtml(map.title)}</caption>\n` +
    `<thead><tr><th scope="col">kernel</th><th scope="col">${escapeHtml(`page owners, ${rowPages} pages a row (first page of each row on the left)`)}</th></tr></thead>\n` +
    `<tbody>\n${body}\n</tbody>\n</table></div>\n<p class="note owner-key">Key: ${key.join(' · ')}</p>\n</section>`
  );
}

function figure(caption: string, svg: string): string {
  return `<figure>\n<figcaption>${escapeHtml(caption)}</figcaption>\n${svg}\n</figure>`;
}

/** The charts: one unlabelled series for a run, one labelled series per run of an experiment. */
function charts(data: ReportData): string {
  const runs: ChartSeries[] = data.series?.length ? data.series : [{ name: '', ...data }];
  const pick = <T>(f: (s: ChartSeries) => T[]): Series<T>[] => runs.map((s) => ({ name: s.name, data: f(s) }));
  const each = data.series?.length ? ', one series per kernel version' : '';
  return [
    figure(`Fault latency (log2 buckets)${each}`, faultLatencyChart(pick((s) => s.faultLatency))),
    figure(`Throughput (faults per second)${each}`, throughputChart(pick((s) => s.throughput))),
    figure(`Lock wait time by lock class${each}`, lockWaitsChart(pick((s) => s.lockWaits))),
  ].join('\n');
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
  const maps = (data.pageMaps ?? []).map(renderPageMap);
  const tables =
    data.tables.length + maps.length > 0 ? [...data.tables.map(renderTable), ...maps].join('\n') : `<p class="empty">No tables.</p>`;
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
${charts(data)}
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
