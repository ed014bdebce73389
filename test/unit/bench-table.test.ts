// The bench harness without a run (bench/table.ts, bench/check.ts): ratios item / baseline and
// PASS / MISS against a target (resolveRows), units per kind (fmtValue), the printed table's
// header, rule, columns and blank line between groups (renderTable), and the check a --quick run
// makes of its own rows (quickRowProblems). No timing: CI runs `npm run bench -- --quick`.

import { describe, expect, it } from 'vitest';
import { CEILING_ROWS, QUICK_ROWS, quickRowProblems } from '../../bench/check.js';
import { type Row, fmtTarget, fmtValue, renderTable, resolveRows } from '../../bench/table.js';

const row = (group: string, name: string, median: number, over: Partial<Row> = {}): Row => ({ group, name, kind: 'time', median, ...over });

/** Every row a --quick run of all groups prints, each with a sound figure and its baseline resolved. */
function quickRun(): Row[] {
  const rows = [
    ...CEILING_ROWS.map((n) => row('ceiling', n, 1e6, { kind: 'rate' })),
    ...Object.entries(QUICK_ROWS).flatMap(([g, names]) => names.map((n, i) => row(g, n, 10 + i, i > 0 ? { baseline: names[0] } : {}))),
  ];
  return resolveRows(rows);
}

describe('resolveRows', () => {
  it('divides by the baseline of the same run and judges the target; no baseline or a zero one leaves no ratio', () => {
    const rows = resolveRows([
      row('g', 'base', 10),
      row('g', 'fast', 15, { baseline: 'base', target: { op: '<=', ratio: 2 } }),
      row('g', 'slow', 30, { baseline: 'base', target: { op: '<=', ratio: 2 } }),
      row('g', 'rate', 40, { kind: 'rate', baseline: 'base', target: { op: '>=', ratio: 3 } }),
      row('g', 'zero', 0, { kind: 'ms' }),
      row('g', 'overZero', 5, { baseline: 'zero' }),
      row('g', 'overNone', 5, { baseline: 'absent' }),
    ]);
    expect(rows.map((r) => [r.name, r.ratio, r.status])).toEqual([
      ['base', undefined, ''],
      ['fast', 1.5, 'PASS'],
      ['slow', 3, 'MISS'],
      ['rate', 4, 'PASS'],
      ['zero', undefined, ''],
      ['overZero', undefined, ''],
      ['overNone', undefined, ''],
    ]);
  });
});

describe('the printed table', () => {
  it('formats each kind in its unit, and a missing figure as a dash', () => {
    expect([fmtValue('time', 7.434), fmtValue('time', 19_100), fmtValue('time', 2.5e6), fmtValue('time', 3e9)]).toEqual([
      '7.43 ns',
      '19.1 µs',
      '2.50 ms',
      '3.00 s',
    ]);
    expect([fmtValue('rate', 129.26e6), fmtValue('rate', 186_400), fmtValue('rate', 61.7)]).toEqual(['129.26 M/s', '186.4 k/s', '61.7 /s']);
    expect([fmtValue('ms', 0), fmtValue('ms', 12.34), fmtValue('time', undefined), fmtValue('time', NaN)]).toEqual([
      '0.00 ms',
      '12.3 ms',
      '—',
      '—',
    ]);
    expect([fmtTarget({ op: '<=', ratio: 2 }), fmtTarget({ op: '>=', ratio: 1.5 }), fmtTarget(undefined)]).toEqual(['≤ 2x', '≥ 1.5x', '—']);
  });

  it('has a header, a rule, one line per row in aligned columns, a blank line between groups, and notes at the end', () => {
    const rows = resolveRows([
      row('a', 'one', 10, { p50: 10, p99: 20 }),
      row('a', 'two', 25, { baseline: 'one', target: { op: '<=', ratio: 2 }, note: 'batches of 1000' }),
      row('b', 'three', 2e6, { kind: 'rate' }),
    ]);
    const lines = renderTable(rows).split('\n');
    expect(lines).toHaveLength(6);
    expect(lines[0].split(/\s{2,}/)).toEqual(['name', 'median', 'p50', 'p99', 'baseline', 'ratio', 'target', 'status']);
    expect(lines[1]).toMatch(/^-+( {2}-+){7}$/);
    expect(lines[2].split(/\s{2,}/)).toEqual(['one', '10.0 ns', '10.0 ns', '20.0 ns', '—', '—', '—', '—']);
    expect(lines[3].split(/\s{2,}/)).toEqual(['two', '25.0 ns', '—', '—', 'one', '2.50x', '≤ 2x', 'MISS', '# batches of 1000']);
    expect(lines[4]).toBe('');
    expect(lines[5].split(/\s{2,}/)).toEqual(['three', '2.00 M/s', '—', '—', '—', '—', '—', '—']);
    // Every column starts where its header does.
    const at = (l: string, col: string): number => l.indexOf(col);
    expect(at(lines[3], 'one')).toBe(at(lines[0], 'baseline'));
    expect(at(lines[2], '10.0 ns') + '10.0 ns'.length).toBe(at(lines[0], 'median') + 'median'.length);
  });
});

describe("a --quick run's check of its own rows", () => {
  it('passes a sound run of every group, and of the groups --only names', () => {
    expect(quickRowProblems(quickRun(), Object.keys(QUICK_ROWS))).toEqual([]);
    const only = quickRun().filter((r) => r.group === 'ceiling' || r.group === 'fault');
    expect(quickRowProblems(only, ['fault'])).toEqual([]);
  });

  it('names a missing, an extra and a repeated row, ceiling rows out of place, a bad median and an unresolved baseline', () => {
    const rows = quickRun().filter((r) => r.name !== 'rt.comlink');
    rows.push(row('micro', 'atomics.store', 5), { ...rows[5] });
    rows.splice(0, 2, rows[1], rows[0]);
    const byName = (n: string): Row => rows.find((r) => r.name === n)!;
    byName('fault.cold.sw').median = NaN;
    byName('cas.pair').median = 0;
    byName('churn.1vcpu.wait.mmu').kind = 'ms';
    byName('churn.1vcpu.wait.mmu').median = 0;
    byName('faults.2vcpu').baseline = 'faults.3vcpu';
    byName('policy.prepare-on-fault').ratio = undefined;
    expect(quickRowProblems(rows, Object.keys(QUICK_ROWS))).toEqual([
      `the first rows are ${[CEILING_ROWS[1], CEILING_ROWS[0], ...CEILING_ROWS.slice(2)].join(', ')}, not the ceiling rows ${CEILING_ROWS.join(', ')}`,
      'missing rows: rt.comlink',
      'rows no group should print: atomics.store',
      'rows printed twice: access.mapped.sw',
      'cas.pair: median 0 (time)',
      'fault.cold.sw: median NaN (time)',
      'faults.2vcpu: baseline faults.3vcpu is no row of this run',
      'policy.prepare-on-fault: ratio undefined over policy.prepare-on-allocate',
    ]);
  });
});
