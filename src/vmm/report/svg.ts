// The pieces the report's SVG charts are made of: number and duration labels, nice scales, the
// chart frame, the value axis, and the legend that names each series and shows its colour.

// ---------------------------------------------------------------------------------------------
// Text helpers

/** Escapes a value for HTML text and attribute values (double- or single-quoted). */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Trims a number to at most `digits` decimals and drops trailing zeros: 1.50 -> "1.5". */
export function trimNum(value: number, digits: number): string {
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
export function compactNum(value: number): string {
  const a = Math.abs(value);
  if (a >= 1e9) return `${shortNum(value / 1e9)}G`;
  if (a >= 1e6) return `${shortNum(value / 1e6)}M`;
  if (a >= 1e3) return `${shortNum(value / 1e3)}k`;
  return Number.isInteger(value) ? String(value) : trimNum(value, 2);
}

/** Milliseconds for labels, switching to seconds when the scale is large. */
export function msLabel(ms: number, inSeconds: boolean): string {
  return inSeconds ? `${trimNum(ms / 1000, 2)}s` : `${trimNum(ms, 2)}ms`;
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
export function niceTicks(min: number, max: number, count = 5): { ticks: number[]; lo: number; hi: number } {
  if (!(max > min)) max = min + 1;
  const step = niceStep((max - min) / count);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let i = 0; lo + i * step <= hi + step * 1e-9; i++) ticks.push(Number((lo + i * step).toPrecision(12)));
  return { ticks, lo, hi };
}

/** Rounds an SVG coordinate to 0.1px to keep the markup short. */
export function px(v: number): string {
  return trimNum(v, 1);
}

// ---------------------------------------------------------------------------------------------
// Series

/** One series of a chart; `name` is '' for a report's single, unlabelled run. */
export interface Series<T> {
  name: string;
  data: T[];
}

/**
 * Series colours, told apart by people with the common colour-vision deficiencies (Okabe-Ito,
 * led by the single-run blue). A ninth series reuses the first colour; the legend still names it.
 */
export const PALETTE = ['#2f6fb3', '#d55e00', '#009e73', '#cc79a7', '#b8860b', '#56b4e9', '#6a3d9a', '#595959'];

/** True when the chart draws several labelled series (so needs a legend and series colours). */
export function labelled(series: Series<unknown>[]): boolean {
  return series.length > 1 || (series.length === 1 && series[0].name !== '');
}

/** Class and data attribute tying a mark to series `i` and its colour; none for a single run. */
export function seriesAttrs(series: Series<unknown>[], i: number, cls: string): string {
  return labelled(series) ? `class="${cls} series-${i % PALETTE.length}" data-series="${i}"` : `class="${cls}"`;
}

/** The series rules of the page's CSS: bars and swatches filled, lines and dots stroked. */
export function seriesCss(): string {
  return PALETTE.map(
    (c, i) =>
      `svg.chart .series-${i}.bar, svg.chart .series-${i}.swatch { fill: ${c}; }\n` +
      `svg.chart .series-${i}.line, svg.chart .series-${i}.dot { stroke: ${c}; }`,
  ).join('\n');
}

const LEGEND_ROW = 20;
const SWATCH = 12;

/** Estimated width of `text` at the legend's 12px sans-serif (no layout engine here). */
function textWidth(text: string): number {
  return text.length * 7;
}

/**
 * The legend above a chart: one entry per series (a colour swatch and its name), flowed into
 * rows that fit between `left` and `right`. Returns its markup and the height it takes; a
 * single unlabelled run has no legend.
 */
export function legend(series: Series<unknown>[], top: number, left: number, right: number): { svg: string; height: number } {
  if (!labelled(series)) return { svg: '', height: 0 };
  let x = left;
  let row = 0;
  let out = '<g class="legend">';
  series.forEach((s, i) => {
    const w = SWATCH + 6 + textWidth(s.name) + 20;
    if (x > left && x + w > right) {
      x = left;
      row++;
    }
    const y = top + row * LEGEND_ROW;
    out +=
      `<g class="legend-item" data-series="${i}"><rect class="swatch series-${i % PALETTE.length}" x="${px(x)}" y="${y}" ` +
      `width="${SWATCH}" height="${SWATCH}" rx="2"/><text class="legend-label" x="${px(x + SWATCH + 6)}" y="${y + SWATCH / 2}" ` +
      `dominant-baseline="middle">${escapeHtml(s.name)}</text></g>`;
    x += w;
  });
  return { svg: `${out}</g>`, height: (row + 1) * LEGEND_ROW + 8 };
}

// ---------------------------------------------------------------------------------------------
// Frame and axes

export const W = 960;

export function svgOpen(id: string, height: number, title: string, desc: string): string {
  return (
    `<svg id="${id}" class="chart" role="img" aria-labelledby="${id}-title ${id}-desc" ` +
    `xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}">` +
    `<title id="${id}-title">${escapeHtml(title)}</title>` +
    `<desc id="${id}-desc">${escapeHtml(desc)}</desc>`
  );
}

export function noData(height: number): string {
  return (
    `<rect class="frame" x="1" y="1" width="${W - 2}" height="${height - 2}" rx="6"/>` +
    `<text class="no-data" x="${W / 2}" y="${height / 2}" text-anchor="middle" dominant-baseline="middle">no data</text>`
  );
}

/** Horizontal grid lines and left-hand tick labels for a vertical value axis. */
export function yAxis(ticks: number[], y: (v: number) => number, left: number, right: number, fmt: (v: number) => string): string {
  let out = '';
  for (const t of ticks) {
    const yy = px(y(t));
    out += `<line class="grid" x1="${left}" x2="${right}" y1="${yy}" y2="${yy}"/>`;
    out += `<text class="tick" x="${left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${escapeHtml(fmt(t))}</text>`;
  }
  return out;
}

/** "name: " for a mark's tooltip in a labelled chart; nothing for a single run. */
export function seriesPrefix(s: Series<unknown>): string {
  return s.name ? `${s.name}: ` : '';
}
