// Benchmark rows, their ratios and targets, and the two ways to print them (a table, or JSON).
// A row's value is in base units: nanoseconds for a time, operations per second for a rate,
// milliseconds for a lock-wait total. Ratios are always item / baseline, of the medians.

export type Kind = 'time' | 'rate' | 'ms';

export interface Target {
  op: '<=' | '>=';
  /** Limit on the ratio (item / baseline). */
  ratio: number;
}

export interface Row {
  group: string;
  name: string;
  kind: Kind;
  median: number;
  /** Percentiles where the figure is sampled (per call, or per batch: see `note`). */
  p50?: number;
  p99?: number;
  samples?: number;
  /** Name of the row this one is divided by (measured in the same process run). */
  baseline?: string;
  ratio?: number;
  target?: Target;
  status?: 'PASS' | 'MISS' | '';
  note?: string;
}

/** Fills ratio and status from the baselines present in `rows`. */
export function resolveRows(rows: Row[]): Row[] {
  const byName = new Map(rows.map((r) => [r.name, r]));
  for (const r of rows) {
    r.status = '';
    if (r.baseline === undefined) continue;
    const b = byName.get(r.baseline);
    if (b === undefined || !(b.median > 0)) continue;
    r.ratio = r.median / b.median;
    if (r.target !== undefined) {
      const ok = r.target.op === '<=' ? r.ratio <= r.target.ratio : r.ratio >= r.target.ratio;
      r.status = ok ? 'PASS' : 'MISS';
    }
  }
  return rows;
}

export function fmtValue(kind: Kind, v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  switch (kind) {
    case 'time':
      if (v < 1e3) return `${v.toFixed(v < 10 ? 2 : 1)} ns`;
      if (v < 1e6) return `${(v / 1e3).toFixed(v < 1e4 ? 2 : 1)} µs`;
      if (v < 1e9) return `${(v / 1e6).toFixed(v < 1e7 ? 2 : 1)} ms`;
      return `${(v / 1e9).toFixed(2)} s`;
    case 'rate':
      if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M/s`;
      if (v >= 1e3) return `${(v / 1e3).toFixed(1)} k/s`;
      return `${v.toFixed(1)} /s`;
    case 'ms':
      return `${v.toFixed(v < 10 ? 2 : 1)} ms`;
  }
}

function fmtRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return '—';
  return r >= 100 ? `${r.toFixed(0)}x` : r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`;
}

export function fmtTarget(t: Target | undefined): string {
  if (t === undefined) return '—';
  return `${t.op === '<=' ? '≤' : '≥'} ${t.ratio}x`;
}

/** A fixed-width text table; `note` goes on the end of the line. */
export function renderTable(rows: Row[]): string {
  const head = ['name', 'median', 'p50', 'p99', 'baseline', 'ratio', 'target', 'status'];
  const cells = rows.map((r) => [
    r.name,
    fmtValue(r.kind, r.median),
    fmtValue(r.kind, r.p50),
    fmtValue(r.kind, r.p99),
    r.baseline ?? '—',
    fmtRatio(r.ratio),
    fmtTarget(r.target),
    r.status || '—',
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]): string =>
    c
      .map((s, i) => (i === 0 || i === 4 ? s.padEnd(width[i]) : s.padStart(width[i])))
      .join('  ')
      .trimEnd();
  const out: string[] = [line(head), width.map((w) => '-'.repeat(w)).join('  ')];
  let group = '';
  rows.forEach((r, i) => {
    if (r.group !== group) {
      if (group !== '') out.push('');
      group = r.group;
    }
    out.push(line(cells[i]) + (r.note ? `   # ${r.note}` : ''));
  });
  return out.join('\n');
}
