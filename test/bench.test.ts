// `npm run bench` smoke test: the quick run (built by `npm test` first) prints every row, each
// with a finite positive median. It checks the harness works, not the figures.

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Rows of `node dist/bench/run.js --quick` (the full run has 256MiB/1GiB instead of 16MiB). */
const EXPECTED = [
  // micro
  'atomics.load',
  'access.mapped.sw',
  'access.mapped.snp',
  'access.mapped.sw.audited',
  'access.mapped.snp.audited',
  'cas.pair',
  'folio.lock+unlock',
  // roundtrip
  'rt.spin',
  'rt.futex',
  'rt.futex.idle',
  'mailbox.nop.awake',
  'mailbox.nop.asleep',
  'mailbox.nop.asleep.strict',
  'rt.futex.idle.clock',
  'rt.comlink',
  // zerofill
  'clear_page.anchor',
  ...['u8.fill', 'u16.fill', 'u32.fill', 'f64.fill', 'b64.fill', 'copyWithin', 'Buffer.fill', 'set.template', 'wasm.memory.fill'].map(
    (m) => `zero-fill.${m}`,
  ),
  // fault
  'zero-fill.page',
  'zero-fill+rt.spin',
  'fault.cold.sw',
  'fault.cold.snp',
  // prefault
  'zero-fill.16MiB',
  'prefault.16MiB.sw',
  'prefault.16MiB.snp',
  // throughput
  'ceiling.chain.1thread',
  'ceiling.chain.2threads',
  'ceiling.fill.1thread',
  'ceiling.fill.2threads',
  'faults.1vcpu',
  'faults.2vcpu',
  ...[1, 2].flatMap((n) => [`churn.${n}vcpu.faults`, ...['invalidate', 'folio', 'mmu'].map((c) => `churn.${n}vcpu.wait.${c}`)]),
  // policy
  'policy.prepare-on-allocate',
  'policy.prepare-on-fault',
  'policy.prepare-on-fault-own-vm',
  // explore
  'explore.schedules.1perCall',
  'explore.steps.1perCall',
  'explore.schedules',
  'explore.steps',
  'explore.schedules.2jobs',
];

interface JsonRow {
  name: string;
  kind: string;
  median: number;
  baseline?: string;
  ratio?: number;
  status?: string;
}

describe('bench', () => {
  it('--quick --json reports every row with a finite positive median', () => {
    const out = execFileSync(process.execPath, ['dist/bench/run.js', '--quick', '--json'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 55_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const report = JSON.parse(out) as {
      quick: boolean;
      rows: JsonRow[];
      machine: { noisy: boolean; scaling: { chain: number; fill: number } };
    };
    expect(report.quick).toBe(true);
    // The machine's state comes first, with the verdict every other figure is read against.
    expect(report.rows.slice(0, 4).map((r) => r.name)).toEqual([
      'ceiling.chain.1thread',
      'ceiling.chain.2threads',
      'ceiling.fill.1thread',
      'ceiling.fill.2threads',
    ]);
    expect(report.machine.noisy).toBe(!(Math.min(report.machine.scaling.chain, report.machine.scaling.fill) >= 1.8));
    const byName = new Map(report.rows.map((r) => [r.name, r]));
    expect([...byName.keys()].sort()).toEqual([...EXPECTED].sort());
    for (const r of report.rows) {
      expect(Number.isFinite(r.median), r.name).toBe(true);
      // A lock-wait total is legitimately 0 when that lock was never contended.
      if (r.kind === 'ms') expect(r.median, r.name).toBeGreaterThanOrEqual(0);
      else expect(r.median, r.name).toBeGreaterThan(0);
      if (r.baseline !== undefined) {
        expect(byName.has(r.baseline), `${r.name}: baseline ${r.baseline}`).toBe(true);
        expect(Number.isFinite(r.ratio), `${r.name}: ratio`).toBe(true);
      }
    }
  }, 60_000);
});
