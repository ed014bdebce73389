// Model checking of scenarios (explore FILE.json): exact schedule counts of the bounded exhaustive
// mode; the planted races of kvm_gmem_punch_hole against a fault found with one preemption, saved,
// shrunk and replayed; the pre-fault versus memslot-delete deadlock of 6.11 (kvm->srcu and
// synchronize_srcu, fixed by 3ccbf6f47098) and 6.18 clean; and the rules a checked scenario keeps.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tempDir } from '../helpers/cli-helpers.js';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BugName } from '../../src/gmem/bugs.js';
import { type McSchedule, ModelChecker, checkModelCheckable, countPreemptions } from '../../src/vmm/scenario/model-check.js';
import { checkerFor, scheduleFile } from '../../src/vmm/scenario/saved.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { ScenarioError } from '../../src/vmm/io/problems.js';
import { gmemOnlyScenario } from '../helpers/gmem-only.js';

const root = join(import.meta.dirname, '../..');
const load = (f: string): unknown => JSON.parse(readFileSync(join(root, 'examples', f), 'utf8'));
const TWO_WRITERS = 'model-check-two-writers.json';
const PUNCH_VS_FAULT = 'model-check-punch-vs-fault.json';

const checkers: ModelChecker[] = [];
afterAll(async () => {
  for (const c of checkers) await c.close();
});
function checker(file: string, bug: BugName | null = null): ModelChecker {
  const c = new ModelChecker(parseScenario(load(file)), { mode: 'exhaustive', preemptions: 0, maxSchedules: 10_000, bug });
  checkers.push(c);
  return c;
}

const C = (n: number, r: number): number => {
  if (r < 0 || r > n) return 0;
  let x = 1;
  for (let i = 0; i < r; i++) x = (x * (n - i)) / (i + 1);
  return x;
};
/**
 * Schedules of two actors that never block each other, with a and b chunks (sync points + 1)
 * and at most k preemptions: the words of a A's and b B's in at most k + 2 runs (one switch,
 * after the first actor to finish exits, is free; every other switch is a preemption).
 */
function twoActorSchedules(a: number, b: number, k: number): number {
  let n = 0;
  for (let r = 2; r <= k + 2; r++) {
    const j = Math.floor(r / 2);
    n += r % 2 === 0 ? 2 * C(a - 1, j - 1) * C(b - 1, j - 1) : C(a - 1, j) * C(b - 1, j - 1) + C(a - 1, j - 1) * C(b - 1, j);
  }
  return n;
}

describe('the exhaustive mode covers a small scenario completely', () => {
  it('two vCPUs writing different pages: 2, 26 and 314 schedules for k = 0, 1, 2, each distinct and within its bound', async () => {
    const mc = checker(TWO_WRITERS);
    // The non-preemptive schedule: vCPU 0 (tid 3) runs its 12 sync points and exits, then vCPU 1.
    const first = await mc.runSchedule(0, []);
    expect(first.outcome).toBe('ok');
    expect(first.choices).toEqual([...Array(13).fill(3), ...Array(13).fill(4)]);
    expect(first.candidates).toEqual([...Array(13).fill([3, 4]), ...Array(13).fill([4])]);
    expect(first.steps.map((s) => `${s.index} ${s.op} ${s.result}`)).toEqual([
      '0 create_guest_memfd ok',
      '1 set_user_memory_region2 ok',
      '2 set_memory_attributes ok',
      '3.0 guest_write ok',
      '3.1 guest_write ok',
      '4 guest_read ok',
    ]);
    const seen: string[][] = [];
    for (const k of [0, 1, 2]) {
      const runs: McSchedule[] = [];
      const res = await mc.explore((_, r) => runs.push(r), undefined, { preemptions: k });
      // 13 chunks per actor (12 sync points each, no lock in common): the count is combinatorial.
      expect(twoActorSchedules(13, 13, k)).toBe([2, 26, 314][k]);
      expect(res).toEqual({
        mode: 'exhaustive',
        preemptions: k,
        schedules: twoActorSchedules(13, 13, k),
        complete: true,
        capHit: false,
        stepLimited: 0,
      });
      const keys = runs.map((r) => r.choices.join(','));
      expect(new Set(keys).size).toBe(runs.length);
      expect(Math.max(...runs.map((r) => r.preemptions))).toBe(k);
      // Each exact count of preemptions p <= k contributes the schedules of p alone.
      for (let p = 0; p <= k; p++)
        expect(runs.filter((r) => r.preemptions === p).length).toBe(
          twoActorSchedules(13, 13, p) - (p > 0 ? twoActorSchedules(13, 13, p - 1) : 0),
        );
      expect(runs.every((r) => r.outcome === 'ok' && r.failures.length === 0 && r.violations.length === 0)).toBe(true);
      seen.push(keys);
    }
    // Not only the counts: the schedules are exactly the words of 13 x '3' and 13 x '4' in at
    // most k + 2 runs (one choice per chunk), enumerated here independently of the search.
    const words = (k: number): string[] => {
      const out: string[] = [];
      const walk = (w: number[], a: number, b: number, runs: number): void => {
        if (runs > k + 2) return;
        if (a === 0 && b === 0) return void out.push(w.join(','));
        for (const [t, left] of [
          [3, a],
          [4, b],
        ] as const) {
          if (left === 0) continue;
          w.push(t);
          walk(w, t === 3 ? a - 1 : a, t === 4 ? b - 1 : b, w.length === 1 || w[w.length - 2] !== t ? runs + 1 : runs);
          w.pop();
        }
      };
      walk([], 13, 13, 0);
      return out.sort();
    };
    for (const k of [0, 1, 2]) expect([...seen[k]].sort()).toEqual(words(k));
    // A larger bound covers every schedule of a smaller one.
    expect(seen[0].every((s) => seen[1].includes(s))).toBe(true);
    expect(seen[1].every((s) => seen[2].includes(s))).toBe(true);
  });

  it('a fault racing PUNCH_HOLE passes on upstream: 2, 21 and 150 schedules for k = 0, 1, 2', async () => {
    const mc = checker(PUNCH_VS_FAULT);
    const counts: number[] = [];
    for (const k of [0, 1, 2]) {
      const res = await mc.explore(undefined, undefined, { preemptions: k });
      expect(res.failing).toBeUndefined();
      expect(res.complete).toBe(true);
      counts.push(res.schedules);
    }
    expect(counts).toEqual([2, 21, 150]);
    // The cap stops the search and says it is not complete.
    const capped = await mc.explore(undefined, undefined, { preemptions: 2, maxSchedules: 5 });
    expect(capped).toEqual({ mode: 'exhaustive', preemptions: 2, schedules: 5, complete: false, capHit: true, stepLimited: 0 });
    // Random walks: seeded, all pass.
    const random = await mc.explore(undefined, undefined, { mode: 'random', maxSchedules: 10, seed: 1 });
    expect(random).toEqual({ mode: 'random', preemptions: 0, schedules: 10, complete: false, capHit: false, stepLimited: 0 });
  });
});

describe('a planted race is found with one preemption, saved, shrunk and replayed', () => {
  // `online`: whether a scheduling point follows the broken state (the stale SPTE of the
  // fault-skips-seq-recheck schedule is installed after the fault's last one: only the end-of-run
  // audit sees it).
  it.each([
    ['invalidate-end-before-truncate', 9, true],
    ['fault-skips-seq-recheck', 13, false],
  ] as const)('%s', async (bug, at, online) => {
    const mc = checker(PUNCH_VS_FAULT, bug);
    // No preemption: the punch and the fault never overlap, and nothing breaks.
    const k0 = await mc.explore(undefined, undefined, { preemptions: 0 });
    expect(k0).toMatchObject({ schedules: 2, complete: true });
    expect(k0.failing).toBeUndefined();
    const res = await mc.explore(undefined, undefined, { preemptions: 1 });
    expect(res.complete).toBe(false);
    expect(res.schedules).toBe(at);
    const f = res.failing!;
    expect(f.outcome).toBe('violation');
    expect(f.preemptions).toBe(1);
    expect(f.failures).toEqual([]);
    // Seen first where it opens, at the fault's next scheduling point, then by the end-of-run audit.
    const byAuditor = {
      invariant: 'useAfterFree',
      by: 'auditor',
      vm: 0,
      gfn: 2,
      pfn: 0,
      detail: 'SPTE maps pfn 0, which is on the free list',
    };
    const atPoint = {
      invariant: 'useAfterFree',
      by: 'thread 1 (online)',
      vm: 0,
      gfn: 2,
      pfn: 0,
      detail: "at a scheduling point, vm 0's SPTE for gfn 2 maps pfn 0, which is on the free list",
    };
    expect(f.violations).toEqual(online ? [atPoint, byAuditor] : [byAuditor]);
    expect(countPreemptions(f.choices, f.candidates, f.groupStarts)).toBe(1);

    // Saved as `replay` reads it, then replayed by a fresh checker built from the file alone.
    const dir = tempDir('mc-');
    const file = join(dir, 'schedule.json');
    const opts = { mode: 'exhaustive' as const, preemptions: 1, maxSchedules: 10_000, bug };
    writeFileSync(file, JSON.stringify(scheduleFile(load(PUNCH_VS_FAULT), PUNCH_VS_FAULT, opts, f)));
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    const rc = checkerFor(saved);
    checkers.push(rc);
    const rep = await rc.replay(saved);
    expect(rep.reproduced).toBe(true);
    expect(rep.result.choices).toEqual(f.choices);
    expect(rep.result.violations).toEqual(f.violations);

    // Shrunk: no more switches than it had, still failing the same way, and it replays.
    const s = await mc.shrink(f, 40);
    expect(s.outcome).toBe('violation');
    expect(s.violations[0].invariant).toBe('useAfterFree');
    const sw = (c: number[]): number => c.slice(1).filter((x, i) => x !== c[i]).length;
    expect(sw(s.choices)).toBeLessThanOrEqual(sw(f.choices));
    expect(s.choices.length).toBeLessThanOrEqual(f.choices.length);
    const again = await rc.replay({ ...saved, choices: s.choices, outcome: s.outcome, failures: s.failures, violations: s.violations });
    expect(again.reproduced).toBe(true);
  });
});

describe('a historical deadlock: KVM_PRE_FAULT_MEMORY versus a memslot delete (6.11, fixed by 3ccbf6f47098)', () => {
  const scenario = (kernel: string): unknown => ({
    kernel,
    vms: [{ name: 'a', type: 'sw-protected', vcpus: 1 }],
    steps: [
      { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '64KiB', expect: 'ok' },
      {
        op: 'set_user_memory_region2',
        vm: 'a',
        slot: 0,
        flags: ['guest_memfd'],
        guest_phys_addr: 0,
        memory_size: '64KiB',
        guest_memfd: 'g',
        expect: 'ok',
      },
      { op: 'set_memory_attributes', vm: 'a', address: 0, size: '64KiB', attributes: 'private', expect: 'ok' },
      {
        op: 'parallel',
        steps: [
          // ok or EAGAIN by schedule: no expectation; the delete must finish.
          { op: 'pre_fault_memory', vm: 'a', vcpu: 0, gpa: 0, size: '8KiB' },
          { op: 'set_user_memory_region2', vm: 'a', slot: 0, flags: ['guest_memfd'], guest_phys_addr: 0, memory_size: 0, expect: 'ok' },
        ],
      },
    ],
  });
  /** One checker per kernel version; each search sets its own preemption bound. */
  const byKernel = new Map<string, ModelChecker>();
  const run = (kernel: string, k: number) => {
    let mc = byKernel.get(kernel);
    if (mc === undefined) {
      mc = new ModelChecker(parseScenario(scenario(kernel)), { mode: 'exhaustive', preemptions: k, maxSchedules: 1000 });
      checkers.push(mc);
      byKernel.set(kernel, mc);
    }
    return mc.explore(undefined, undefined, { preemptions: k });
  };

  it('6.11: one preemption (the delete inside the pre-fault) deadlocks; the report names both actors and what each waits on', async () => {
    const res = await run('6.11', 1);
    expect(res.schedules).toBe(4);
    const f = res.failing!;
    expect(f.outcome).toBe('deadlock');
    expect(f.preemptions).toBe(1);
    expect(f.violations).toEqual([
      {
        invariant: 'liveness',
        by: 'scheduler',
        detail:
          'deadlock in parallel group 3: no actor can run: vmm waits on synchronize_srcu(kvm->srcu of vm 0): the read section of thread 3 (held by vcpu 0 of vm a); vcpu 0 of vm a waits on the memslot generation of vm 0 (a fault retrying on an INVALID slot waits for the next publish) (value 2) or a signal',
      },
    ]);
    // The scheduler aborts every actor of a deadlocked schedule: the delete does not run on past
    // the abort into memslot state the pre-fault's unwinding left behind.
    expect(f.steps.slice(3).map((s) => `${s.op} ${s.result}`)).toEqual(['pre_fault_memory aborted', 'set_user_memory_region2 aborted']);
  });

  it('6.18: every schedule with at most one preemption passes (2 and 30 schedules)', async () => {
    expect(await run('6.18', 0)).toMatchObject({ schedules: 2, complete: true });
    const r = await run('6.18', 1);
    expect(r).toEqual({ mode: 'exhaustive', preemptions: 1, schedules: 30, complete: true, capHit: false, stepLimited: 0 });
  });
});

describe('the command line', () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [join(root, 'bin/gmem-sandbox.js'), ...args], { encoding: 'utf8', timeout: 60_000 });
  it('explore FILE.json finds the planted race (exit 1), saves the schedule, and replay reproduces it (exit 0)', () => {
    const dir = tempDir('mc-cli-');
    const r = cli(
      'explore',
      join(root, 'examples', PUNCH_VS_FAULT),
      '--preemptions',
      '1',
      '--bug',
      'invalidate-end-before-truncate',
      '--no-shrink',
      '--out',
      dir,
      '--json',
    );
    expect(r.status, r.stderr).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      mode: 'exhaustive',
      preemptions: 1,
      schedules: 9,
      complete: false,
      ok: false,
      failing: { outcome: 'violation', preemptions: 1 },
    });
    expect(out.saved).toBe(join(dir, 'schedule-model-check-punch-vs-fault-exhaustive-k1.json'));
    expect(existsSync(out.saved)).toBe(true);
    const rep = cli('replay', out.saved);
    expect(rep.status, rep.stderr).toBe(0);
    expect(rep.stdout).toMatch(
      /reproduced exactly \(outcome violation\)\n {2}useAfterFree: at a scheduling point, vm 0's SPTE for gfn 2 maps pfn 0, which is on the free list/,
    );
    // With a Chrome trace of the replayed schedule: one track per actor.
    const trace = join(dir, 'replay.json');
    const traced = cli('replay', out.saved, '--trace', trace);
    expect(traced.status, traced.stderr).toBe(0);
    expect(traced.stderr).toContain(`gmem-sandbox replay: wrote the trace to ${trace}`);
    const events = JSON.parse(readFileSync(trace, 'utf8')) as { traceEvents: Array<{ ph: string; name?: string }>; metadata: object };
    expect(events.metadata).toEqual({ droppedEvents: 0 });
    expect(events.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').length).toBeGreaterThanOrEqual(2);
  });
  it('a refused scenario is a usage error (exit 2) and runs nothing', () => {
    const r = cli('explore', join(root, 'examples', 'punch-hole-leftover.json'));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/steps\.5: 'pause' scripts one interleaving/);
    expect(r.stdout).toBe('');
  });
});

describe('the rules of a model-checked scenario', () => {
  const base = (): { kernel: string; vms: unknown[]; steps: unknown[] } => JSON.parse(JSON.stringify(load(PUNCH_VS_FAULT)));
  const problems = (raw: unknown): string[] => {
    try {
      checkModelCheckable(parseScenario(raw));
      return [];
    } catch (e) {
      if (!(e instanceof ScenarioError)) throw e;
      return e.problems;
    }
  };
  it('accepts the examples', () => {
    expect(problems(base())).toEqual([]);
    expect(problems(load(TWO_WRITERS))).toEqual([]);
  });
  it('refuses two ioctl steps in one group, naming the rule', () => {
    const s = base();
    (s.steps[4] as { steps: unknown[] }).steps.push({ op: 'folio_query', fd: 'g', offset: 0 });
    expect(problems(s)).toEqual([
      'steps.4.steps.2: steps.4.steps.0 already runs on the VMM; each step of a parallel group needs its own actor (one VMM thread for ioctl steps, one thread per vCPU for guest steps), so at most one ioctl step and one step per vCPU per group',
    ]);
  });
  it('refuses scripted pauses, controller steps in a group, and a scenario with no group', () => {
    const s = base();
    s.steps.splice(4, 1, { op: 'pause', point: 'fault.before_get_pfn' }, { op: 'parallel', steps: [{ op: 'stats' }] });
    expect(problems(s)).toEqual([
      "steps.4: 'pause' scripts one interleaving; a model checker explores all of them (remove pause/resume/await_held/settle)",
      "steps.5.steps.0: 'stats' runs on the controller, which is no actor; move it out of the parallel group",
    ]);
    const none = base();
    none.steps.splice(4, 1);
    expect(problems(none)).toEqual(['steps: no parallel group; there is nothing to interleave']);
  });
});

describe('host accesses through a guest_memfd mapping are actors too (6.18, kvm_gmem_fault_user_mapping on the VMM worker)', () => {
  const scenario = gmemOnlyScenario([
    { op: 'mmap', fd: 'g', as: 'm', offset: 0, size: '8KiB', expect: 'ok' },
    {
      op: 'parallel',
      steps: [
        { op: 'host_write', map: 'm', offset: 0, data: 'aa', expect: 'ok' },
        { op: 'guest_write', vm: 'a', vcpu: 0, gpa: '0x100001', data: 'bb', expect: 'ok' },
      ],
    },
    { op: 'host_read', map: 'm', offset: 0, len: 2, expect: 'ok', expect_value: 'aabb' },
    {
      op: 'parallel',
      steps: [
        { op: 'host_read', map: 'm', offset: 0, len: 1, expect: 'ok' },
        { op: 'guest_write', vm: 'a', vcpu: 0, gpa: '1MiB', data: 'cc', expect: 'ok' },
      ],
    },
    { op: 'fallocate', fd: 'g', mode: ['keep_size', 'punch_hole'], offset: 0, len: '4KiB', expect: 'ok' },
    { op: 'host_read', map: 'm', offset: 0, len: 2, expect: 'ok', expect_value: '0000' },
    { op: 'guest_read', vm: 'a', vcpu: 0, gpa: '1MiB', len: 2, expect: 'ok', expect_value: '0000' },
  ]);

  it('the host and a guest fault one folio at once, then race on one byte: every schedule within 1 preemption passes', async () => {
    const mc = new ModelChecker(parseScenario(scenario), { mode: 'exhaustive', preemptions: 1, maxSchedules: 2000, bug: null });
    checkers.push(mc);
    const reads = new Set<string>();
    const res = await mc.explore((_n, r) => {
      // The host's read racing the guest's write sees the byte before or after it, nothing else.
      reads.add(String(r.steps.find((s) => s.index === '5.0')?.value));
    });
    expect(res.failing?.failures ?? []).toEqual([]);
    expect(res.failing?.violations ?? []).toEqual([]);
    expect({ ...res, failing: res.failing?.outcome }).toMatchObject({ complete: true });
    expect(res.schedules).toBeGreaterThan(10);
    expect([...reads].sort()).toEqual(['aa', 'cc']);
  }, 120_000);
});
