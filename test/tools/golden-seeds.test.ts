// Schedules recorded before a change replay exactly after it: test/fixtures/golden/explore-seeds.json
// holds, per explorer configuration (7.0, 6.18 under PCT, 6.11, and two planted bugs), what
// each seed gave when it was recorded (steps, switches, outcome, a hash of the
// choices, the VMM ops run, the shape, the violations) and the full choices of the first failing
// schedule. Each configuration's first seeds and its failing seed run again through the Explorer,
// field for field, and the failing schedule replays from its choices with the same violations:
// the 6.11 pre-fault deadlock (kvm->srcu against synchronize_srcu, fixed by 3ccbf6f47098), the 6.18
// flags toggle (fixed by 9935df5333aa), a fault that skips the mmu_invalidate_seq recheck, and a
// memslot update that skips synchronize_srcu. First recorded before the house restructure; recorded
// again when 7.0 was modelled and memory failure took the kernel's lock order (the folio lock
// held across kvm_gmem_error_folio), which changed every schedule that runs either; and again when
// the default workload gained the host-mapping ops and, from 6.18, the default VM on GMEM_ONLY
// memslots: only the seeds that draw that shape changed, and 6.18's flags toggle now shows first in
// it (seed 6: a flags-only update dropping KVM_MEM_GUEST_MEMFD from a GMEM_ONLY slot); and again
// when guests began to probe the plain memslot the VMM creates and moves (one more draw per guest
// step): 6.11 now deadlocks at seed 3; and again when the workload drew the launch op for a VM
// launching beside the first: the planted fault-skips-seq-recheck now shows at 154; and again
// when that VM got vCPUs (the prefault handles are online vCPUs LAUNCH_FINISH syncs) and the
// vcpu op: that configuration's first failure is now 7.0's second LAUNCH_FINISH, at seed 98.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import type { Violation } from '../../src/checker/violations.js';
import { type ExploreConfig, Explorer, type ScheduleResult } from '../../src/vmm/explore/explorer.js';

interface Row {
  seed: number;
  steps: number;
  switches: number;
  outcome: ScheduleResult['outcome'];
  /** The first 16 hex digits of sha256(choices.join(',')). */
  choices: string;
  /** VMM ops run, as 'op=n' for n > 0, in the result's order. */
  ops: string;
  shape: ScheduleResult['shape'];
  /** The invariants broken, in order. */
  violations: string[];
}

interface Failing {
  failingFull: { seed: number; choices: number[]; violations: Violation[] };
}

const GOLDEN = JSON.parse(readFileSync(new URL('../fixtures/golden/explore-seeds.json', import.meta.url), 'utf8')) as Record<
  string,
  { config: ExploreConfig; rows: Array<Row | Failing> }
>;

/** Seeds of each configuration run again: its first ones, and its failing one. */
const FIRST_SEEDS = 6;

/** A result in the recorded row's terms (as the recording script wrote it). */
function rowOf(r: ScheduleResult): Row {
  return {
    seed: r.seed,
    steps: r.steps,
    switches: r.switches,
    outcome: r.outcome,
    choices: createHash('sha256').update(r.choices.join(',')).digest('hex').slice(0, 16),
    ops: Object.entries(r.ops)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k}=${n}`)
      .join(','),
    shape: r.shape,
    violations: r.violations.map((v) => v.invariant),
  };
}

const explorers: Explorer[] = [];
afterAll(async () => {
  await Promise.all(explorers.map((e) => e.close()));
});

describe('recorded schedules replay exactly', () => {
  it('the recording has the configurations and failing schedules it was made with', () => {
    expect(Object.keys(GOLDEN)).toEqual(['7.0-random', '6.18-pct', '6.11-random', 'bug-fault-skips-seq-recheck', 'bug-memslot-srcu-pct']);
    const failing = Object.values(GOLDEN).map((g) => g.rows.filter((r): r is Failing => 'failingFull' in r).map((r) => r.failingFull.seed));
    expect(failing).toEqual([[], [6], [3], [98], [182]]);
  });

  it.each(Object.entries(GOLDEN))('%s', async (_name, { config, rows }) => {
    const e = new Explorer(config);
    explorers.push(e);
    const recorded = rows.filter((r): r is Row => !('failingFull' in r));
    const failing = rows.find((r): r is Failing => 'failingFull' in r)?.failingFull;
    const want = recorded.filter((r, i) => i < FIRST_SEEDS || r.seed === failing?.seed);
    // One batch, as explore runs them: it stops at its first failing schedule, the last one here.
    const got = await e.runSchedules(want.map((r) => r.seed));
    expect(got.map(rowOf)).toEqual(want);
    if (failing === undefined) return;
    const replay = await e.runSchedule(failing.seed, failing.choices);
    expect(replay.choices).toEqual(failing.choices);
    expect(replay.violations).toEqual(failing.violations);
  });
});
