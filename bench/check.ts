// What a `--quick` run must show, checked by run.ts at its end (CI runs `npm run bench -- --quick`
// after the tests): the machine's ceiling rows first, every row of each group run, each with a
// finite median (positive, but for a lock-wait total, which is 0 when never contended), and every
// baseline a row of the same run with a finite ratio. It checks the harness, not the figures.

import type { Row } from './table.js';

/** The ceiling rows, measured before any group: every ratio below is read against them. */
export const CEILING_ROWS = ['ceiling.chain.1thread', 'ceiling.chain.2threads', 'ceiling.fill.1thread', 'ceiling.fill.2threads'];

/** Rows of each group in a --quick run (the full run sizes prefault at 256MiB/1GiB instead of 16MiB). */
export const QUICK_ROWS: Record<string, string[]> = {
  micro: [
    'atomics.load',
    'access.mapped.sw',
    'access.mapped.snp',
    'access.mapped.sw.audited',
    'access.mapped.snp.audited',
    'host.access.mapped',
    'cas.pair',
    'folio.lock+unlock',
  ],
  roundtrip: [
    'rt.spin',
    'rt.futex',
    'rt.futex.idle',
    'mailbox.nop.awake',
    'mailbox.nop.asleep',
    'mailbox.nop.asleep.strict',
    'rt.futex.idle.clock',
    'rt.comlink',
  ],
  zerofill: [
    'clear_page.anchor',
    ...['u8.fill', 'u16.fill', 'u32.fill', 'f64.fill', 'b64.fill', 'copyWithin', 'Buffer.fill', 'set.template', 'wasm.memory.fill'].map(
      (m) => `zero-fill.${m}`,
    ),
  ],
  fault: [
    'zero-fill.page',
    'zero-fill+rt.spin',
    'fault.cold.sw',
    'fault.cold.snp',
    'fault.cold.snp.7.0',
    'host.fault.cold',
    'fault.refault.snp',
    'fault.refault.snp.7.0',
    ...['4KiB', '2MiB'].flatMap((size) => ['7.0', '7.4'].flatMap((v) => ['private', 'shared'].map((way) => `convert.${size}.${way}.${v}`))),
  ],
  prefault: ['zero-fill.16MiB', 'prefault.16MiB.sw', 'prefault.16MiB.snp'],
  throughput: [
    'faults.1vcpu',
    'faults.2vcpu',
    ...[1, 2].flatMap((n) => [`churn.${n}vcpu.faults`, ...['invalidate', 'folio', 'mmu'].map((c) => `churn.${n}vcpu.wait.${c}`)]),
  ],
  policy: ['policy.prepare-on-allocate', 'policy.prepare-on-fault', 'policy.prepare-on-fault-own-vm'],
  explore: ['explore.schedules.1perCall', 'explore.steps.1perCall', 'explore.schedules', 'explore.steps', 'explore.schedules.2jobs'],
};

/** Problems with the rows of a --quick run of `groups` (resolved: ratios filled); empty when it is sound. */
export function quickRowProblems(rows: readonly Row[], groups: readonly string[]): string[] {
  const out: string[] = [];
  const names = rows.map((r) => r.name);
  const first = names.slice(0, CEILING_ROWS.length);
  if (first.join() !== CEILING_ROWS.join())
    out.push(`the first rows are ${first.join(', ')}, not the ceiling rows ${CEILING_ROWS.join(', ')}`);
  const want = [...CEILING_ROWS, ...groups.flatMap((g) => QUICK_ROWS[g] ?? [`(unknown group ${g})`])];
  const missing = want.filter((n) => !names.includes(n));
  const extra = names.filter((n) => !want.includes(n));
  const twice = names.filter((n, i) => names.indexOf(n) !== i);
  if (missing.length) out.push(`missing rows: ${missing.join(', ')}`);
  if (extra.length) out.push(`rows no group should print: ${extra.join(', ')}`);
  if (twice.length) out.push(`rows printed twice: ${twice.join(', ')}`);
  for (const r of rows) {
    // A lock-wait total is legitimately 0 when that lock was never contended.
    const ok = Number.isFinite(r.median) && (r.kind === 'ms' ? r.median >= 0 : r.median > 0);
    if (!ok) out.push(`${r.name}: median ${r.median} (${r.kind})`);
    if (r.baseline === undefined) continue;
    if (!names.includes(r.baseline)) out.push(`${r.name}: baseline ${r.baseline} is no row of this run`);
    else if (!Number.isFinite(r.ratio)) out.push(`${r.name}: ratio ${r.ratio} over ${r.baseline}`);
  }
  return out;
}
