// Controlled schedules: determinism, replay, every planted bug found, every policy clean.

import { afterAll, describe, expect, it } from 'vitest';
import { BUGS, BUG_NAMES, type BugName } from '../src/gmem/bugs.js';
import { KERNEL_VERSIONS } from '../src/gmem/version.js';
import { CATALOGUE } from '../src/vmm/explore/catalogue.js';
import { randomLayout } from '../src/vmm/workload/layout.js';
import { VMM_OPS } from '../src/vmm/workload/mix.js';
import { type ExploreConfig, Explorer, type ScheduleResult, switchesIn, workloadFor } from '../src/vmm/explore/explorer.js';
import { ExplorePool } from '../src/vmm/explore/pool.js';
import { Bell } from '../src/shm/bell.js';
import { INVARIANTS, type Violation } from '../src/checker/violations.js';
import { sumStats } from '../src/shm/stats.js';
import type { RuntimeOptions, VcpuActor } from '../src/vmm/sandbox/runtime.js';
import { TEST_VCPU_WORKER, testHooks } from './runtime-helpers.js';

const explorers: Explorer[] = [];
afterAll(async () => {
  for (const e of explorers) await e.close();
});

/** The explorer on upstream (no known bug) unless told otherwise: what it finds is planted. */
function explorer(over: Partial<ExploreConfig> = {}, runtime: Pick<RuntimeOptions, 'vcpuWorker'> = {}): Explorer {
  const bug = over.bug ?? null;
  const kernel = over.policy === undefined ? { kernel: over.kernel ?? ('upstream' as const) } : {};
  const e = new Explorer({ ...kernel, bug, strategy: 'random', depth: 3, maxSteps: 20_000, workload: workloadFor(bug), ...over }, runtime);
  explorers.push(e);
  return e;
}

/**
 * Runs seeds from..to in batches of 16, as the CLI does (a batch ends at its first failing
 * schedule); `each` sees every result in seed order and returns true to stop.
 */
async function eachSchedule(
  e: Explorer,
  from: number,
  to: number,
  each: (r: ScheduleResult) => boolean | void,
  forced?: number[],
): Promise<void> {
  for (let s = from; s <= to; s += 16) {
    const rs = await e.runSchedules(
      Array.from({ length: Math.min(16, to - s + 1) }, (_, i) => s + i),
      forced,
    );
    for (const r of rs) if (each(r) === true) return;
  }
}

describe('controlled schedules', () => {
  it('the same seed gives the same interleaving, trace and outcome', async () => {
    const a = explorer();
    const b = explorer();
    for (const seed of [1, 2, 99]) {
      const ra = await a.runSchedule(seed);
      const ta = a.trace();
      const rb = await b.runSchedule(seed);
      expect(rb.choices).toEqual(ra.choices);
      expect(b.trace()).toEqual(ta);
      expect(rb.outcome).toBe(ra.outcome);
      expect(ra.steps).toBeGreaterThan(20);
      expect(ra.switches).toBeGreaterThan(0);
    }
    // Different seeds give different interleavings.
    const r1 = await a.runSchedule(1);
    const r2 = await a.runSchedule(2);
    expect(r1.choices).not.toEqual(r2.choices);
  });

  it('PCT is deterministic too and follows its priorities', async () => {
    const a = explorer({ strategy: 'pct', depth: 2 });
    const r1 = await a.runSchedule(5);
    const r2 = await a.runSchedule(5);
    expect(r2.choices).toEqual(r1.choices);
    // PCT runs the top-priority actor until it blocks or a change point: few switches.
    const rw = await explorer().runSchedule(5);
    expect(r1.switches).toBeLessThan(rw.switches);
  });

  it('a failing schedule replays exactly from its choices, and shrinks to fewer switches', async () => {
    const e = explorer({ bug: 'fault-skips-seq-recheck' });
    let failing = null;
    for (let seed = 1; seed <= 1000 && failing === null; seed++) {
      const r = await e.runSchedule(seed);
      if (r.outcome === 'violation') failing = r;
    }
    expect(failing).not.toBeNull();
    const replay = await e.runSchedule(failing!.seed, failing!.choices);
    expect(replay.choices).toEqual(failing!.choices);
    expect(replay.violations).toEqual(failing!.violations);
    const before = { ...e.cfg.workload };
    const shrunk = await e.shrink(failing!, 60);
    expect(shrunk.outcome).toBe('violation');
    // Workload operations go too: fewer VMM ops or guest accesses, and the explorer keeps them.
    expect(shrunk.workload.vmmOps * shrunk.workload.accesses).toBeLessThan(before.vmmOps * before.accesses);
    expect(e.cfg.workload).toEqual(shrunk.workload);
    expect(switchesIn(shrunk.choices)).toBeLessThanOrEqual(switchesIn(failing!.choices));
    const again = await e.runSchedule(failing!.seed, shrunk.choices);
    expect(again.outcome).toBe('violation');
    expect(again.choices.slice(0, shrunk.choices.length)).toEqual(shrunk.choices);
  });
});

describe('batches: schedules as rounds on the workers (explore/round.ts)', () => {
  it('a batch gives, schedule by schedule, exactly what single runs give', async () => {
    // One explorer is enough: every schedule starts from a reset sandbox.
    const a = explorer();
    const b = a;
    const seeds = [3, 4, 5, 6, 7, 8, 9, 10];
    const batch = await a.runSchedules(seeds);
    expect(batch.map((r) => r.seed)).toEqual(seeds);
    for (const r of batch) {
      const single = await b.runSchedule(r.seed);
      expect(r.choices).toEqual(single.choices);
      expect(r.steps).toBe(single.steps);
      expect(r.ops).toEqual(single.ops);
      expect(r.shape).toEqual(single.shape);
      expect(r.outcome).toBe('ok');
    }
    expect(a.schedulesRun).toBe(2 * seeds.length);
  });

  it('a batch stops at its first failing schedule, and a pool of two explorers reports the seed one explorer does', async () => {
    const bug = 'fault-skips-seq-recheck' as const;
    const e = bugExplorer(bug);
    const seeds = Array.from({ length: 400 }, (_, i) => i + 1);
    let first: ScheduleResult | null = null;
    for (let i = 0; i < seeds.length && first === null; i += 16) {
      const rs = await e.runSchedules(seeds.slice(i, i + 16));
      const last = rs[rs.length - 1];
      // Every schedule before the last ran clean; the batch ended early only at a failure.
      expect(rs.slice(0, -1).every((r) => r.outcome === 'ok' || r.outcome === 'step-limit')).toBe(true);
      if (last.outcome === 'violation') first = last;
      else expect(rs.length).toBe(Math.min(16, seeds.length - i));
    }
    expect(first).not.toBeNull();
    const pool = new ExplorePool(
      { kernel: 'upstream', bug, strategy: 'random', depth: 3, maxSteps: 20_000, workload: workloadFor(bug) },
      2,
    );
    try {
      const found = await pool.search(seeds, 4);
      expect(found.failing?.result.seed).toBe(first!.seed);
      expect(found.failing?.result.choices).toEqual(first!.choices);
      expect(found.schedules).toBe(first!.seed);
      expect(found.ran).toBeGreaterThanOrEqual(found.schedules);
    } finally {
      await pool.close();
    }
  });

  it('a worker that never takes its part is reported hung, with who waits on what, and close does not hang', async () => {
    const e = explorer({ scheduleTimeoutMs: 1000 });
    await e.runSchedule(1);
    // The vCPU worker is kept busy following a doorbell nobody rings: the batch's call to it waits behind that.
    const inner = e as unknown as {
      runners: Array<{ tid: number; api: { exploreFollow(...a: unknown[]): Promise<unknown> } }>;
      rt: { descriptor: { buffers: unknown; kernel: string } };
    };
    const stuck = inner.runners[1];
    void stuck.api
      .exploreFollow(
        Bell.allocate(),
        0,
        {
          buffers: inner.rt.descriptor.buffers,
          kernel: inner.rt.descriptor.kernel,
          tid: stuck.tid,
          mode: 'controlled',
          platform: 'direct',
        },
        1,
      )
      .catch(() => undefined);
    const t0 = performance.now();
    await expect(e.runSchedules([2, 3])).rejects.toThrow(/^explorer hung: no schedule of the batch finished within 1000 ms; /);
    expect(performance.now() - t0).toBeLessThan(5_000);
    await e.close();
  });

  it("a follower's own error mid-batch aborts the schedule at once and is reported as the cause, with its schedule", async () => {
    const e = explorer({ scheduleTimeoutMs: 3000 }, { vcpuWorker: TEST_VCPU_WORKER });
    await e.runSchedules([1, 2]);
    const vcpu = (e as unknown as { runners: VcpuActor[] }).runners[1];
    for (let seed = 3; seed < 30; seed += 3) {
      await testHooks(vcpu).failNextRound('planted follower error');
      const t0 = performance.now();
      // It fails before it registers: without the abort the other actors would wait for it until the watchdog.
      await expect(e.runSchedules([seed, seed + 1])).rejects.toThrow(
        new RegExp(`^schedule ${seed}: a worker failed: Error: planted follower error`),
      );
      expect(performance.now() - t0).toBeLessThan(5_000);
      // The explorer goes on: the abort that error raised does not outlive its batch (a follower
      // that saw it before the leader's reset would never arrive).
      expect((await e.runSchedules([seed + 2])).map((r) => r.outcome)).toEqual(['ok']);
    }
    await e.close();
  });

  it('a worker that died fails the batch at once, naming it, and close does not hang', async () => {
    const e = explorer({}, { vcpuWorker: TEST_VCPU_WORKER });
    await e.runSchedule(1);
    const vcpu = (e as unknown as { runners: VcpuActor[] }).runners[0];
    void testHooks(vcpu)
      .exitNow(3)
      .catch(() => undefined);
    await vcpu.dead.catch(() => undefined);
    const t0 = performance.now();
    await expect(e.runSchedules([2, 3, 4])).rejects.toThrow(/vcpu 0 of vm vm0 exited: thread exited with code 3/);
    expect(performance.now() - t0).toBeLessThan(5_000);
    await e.close();
  });
});

/** One explorer per planted bug, shared by the tests below (a sandbox's start costs more than its schedules). */
const perBug = new Map<BugName, Explorer>();
function bugExplorer(bug: BugName, strategy: 'random' | 'pct' = 'random'): Explorer {
  let e = perBug.get(bug);
  if (e === undefined) perBug.set(bug, (e = explorer({ bug })));
  e.cfg = { ...e.cfg, strategy, depth: 3 };
  return e;
}

describe('planted bugs: races need a preemption, the others do not', () => {
  it.each(BUG_NAMES)('%s', async (bug: BugName) => {
    const e = bugExplorer(bug);
    let found = 0;
    // Forced choices [] = no preemption anywhere: each actor runs until it blocks or exits.
    await eachSchedule(e, 1, 40, (r) => void (r.outcome !== 'ok' && found++), []);
    if (BUGS[bug].race) expect(found, 'a race is never shown without preemption').toBe(0);
    else expect(found, 'not a race: some schedule without preemption shows it').toBeGreaterThan(0);
  });
});

describe('planted bugs are each found within 1,000 schedules', () => {
  it.each(BUG_NAMES)('%s', async (bug: BugName) => {
    const e = bugExplorer(bug);
    let found = 0;
    await eachSchedule(e, 1, 1000, (r) => {
      if (r.outcome === 'ok' || r.outcome === 'step-limit') return false;
      found = r.seed;
      // A planted bug breaks an invariant; none of them deadlocks, but for the lock inversion,
      // whose deadlock lockdep reports before the scheduler sees it.
      if (bug === 'error-folio-under-folio-lock') expect(r.violations[0].invariant).toBe('lockOrder');
      else expect(r.outcome).toBe('violation');
      expect(INVARIANTS).toContain(r.violations[0].invariant);
      return true;
    });
    expect(found).toBeGreaterThan(0);
  });

  it.each(BUG_NAMES)('%s, by PCT (depth 3)', async (bug: BugName) => {
    const e = bugExplorer(bug, 'pct');
    let found = 0;
    await eachSchedule(e, 1, 1000, (r) => r.outcome === 'violation' && (found = r.seed) > 0);
    expect(found).toBeGreaterThan(0);
  });
});

/** The VMM ops that touch no object lifetime: each version's prepare logic alone. */
const PAGE_OPS = 'punch=3,convert=1,fallocate=1,prefault=1';

describe('each version survives 200 schedules of page operations (its prepare logic is clean)', () => {
  it.each([...KERNEL_VERSIONS])(
    '%s',
    async (kernel) => {
      const e = explorer({ kernel, workload: workloadFor(null, { ops: PAGE_OPS, vmmOps: 3 }) });
      const outcomes: Record<string, number> = {};
      await eachSchedule(e, 1, 200, (r) => {
        outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
        if (r.violations.length > 0) expect.fail(`seed ${r.seed}: ${JSON.stringify(r.violations[0])}`);
      });
      expect(outcomes.ok).toBe(200);
      await e.close();
    },
    120_000,
  );
});

describe('historical bugs, found by running the version that had them', () => {
  /** Schedules until the first violation (0: none), that schedule, and its details. */
  async function hunt(e: Explorer, n: number) {
    let found: { seed: number; r: ScheduleResult | null; details: string[] } = { seed: 0, r: null, details: [] };
    await eachSchedule(e, 1, n, (r) => {
      if (r.outcome === 'violation' || r.outcome === 'deadlock') {
        found = { seed: r.seed, r, details: r.violations.map((v) => v.detail) };
        return true;
      }
      expect(r.outcome, `seed ${r.seed}`).toBe('ok');
    });
    return found;
  }

  const explorable = CATALOGUE.filter((b) => b.workload !== undefined);
  it.each(explorable.map((b) => [b.id, b] as const))(
    '%s: its buggy version finds it, its fixed version runs the same seeds clean',
    async (_id, bug) => {
      const workload = workloadFor(null, bug.workload);
      const buggy = await hunt(explorer({ kernel: bug.buggy[bug.buggy.length - 1], workload }), 300);
      expect(buggy.seed, 'found on the buggy version').toBeGreaterThan(0);
      expect(buggy.r!.violations[0].invariant).toBe(bug.invariant);
      expect(buggy.details).toContainEqual(expect.stringMatching(bug.detail));
      expect((await hunt(explorer({ kernel: bug.fixed[0], workload }), 150)).seed, 'clean on the fixed version').toBe(0);
    },
    90_000,
  );

  it('the pre-fault deadlock report names every blocked actor, what it waits on and who holds it, and the schedule replays exactly', async () => {
    const bug = CATALOGUE.find((b) => b.id === 'prefault-memslot-deadlock')!;
    const e = explorer({ kernel: '6.11', workload: workloadFor(null, bug.workload) });
    const found = await hunt(e, 300);
    expect(found.r!.outcome).toBe('deadlock');
    // One VMM thread holds slots_lock in synchronize_srcu (the other, if it wants the lock, waits
    // on it), while a vCPU's pre-fault spins on the INVALID slot inside its read section.
    expect(found.details[0]).toMatch(/^deadlock: no actor can run: /);
    expect(found.details[0]).toMatch(
      /vmm( 2)? waits on synchronize_srcu\(kvm->srcu of vm 0\): the read section of thread \d+ \(held by vcpu \d \(vm 0\)\)/,
    );
    expect(found.details[0]).toMatch(/vcpu \d \(vm 0\) waits on the memslot generation of vm 0/);
    const again = await e.runSchedule(found.seed, found.r!.choices);
    expect(again.outcome).toBe('deadlock');
    expect(again.violations).toEqual(found.r!.violations);
  }, 60_000);

  it('upstream survives 150 schedules of the default workload, which reaches every operation, link and a launching VM', async () => {
    const e = explorer({ kernel: 'upstream' });
    const ops = Object.fromEntries(VMM_OPS.map((o) => [o, 0]));
    const shapes = { one: 0, linked: 0, launchingBeside: 0 };
    await eachSchedule(e, 1, 150, (r) => {
      if (r.violations.length > 0) expect.fail(`seed ${r.seed}: ${JSON.stringify(r.violations[0])}`);
      for (const o of VMM_OPS) ops[o] += r.ops[o];
      if (r.shape.launchingBeside) shapes.launchingBeside++;
      else if (r.shape.vms > 1) shapes.linked++;
      else shapes.one++;
    });
    for (const o of VMM_OPS) expect(ops[o], o).toBeGreaterThan(0);
    expect(shapes.linked).toBeGreaterThan(5);
    expect(shapes.launchingBeside).toBeGreaterThan(5);
    expect(shapes.one).toBeGreaterThan(100);
  }, 60_000);

  it('two VMM threads overlap their ioctls: one waits on a lock the other holds (6.11, memslot updates)', async () => {
    const e = explorer({
      kernel: '6.11',
      workload: workloadFor(null, { vmType: 'sw-protected', ops: 'memslot=1', vmmOps: 2, prefaultRatio: 0.3, multiVmShare: 0 }),
    });
    let both: Violation | null = null;
    await eachSchedule(
      e,
      1,
      300,
      (r) =>
        (both =
          r.violations.find((v) =>
            /vmm waits on slots_lock of vm 0 \(held by vmm 2\)|vmm 2 waits on slots_lock of vm 0 \(held by vmm\)/.test(v.detail),
          ) ?? null) !== null,
    );
    expect(both).not.toBeNull();
  }, 60_000);
});

describe('invariants checked while a schedule runs', () => {
  it('a SPTE mapping a freed page is caught at the scheduling point where the window opens (punch-frees-before-zap)', async () => {
    const e = explorer({ bug: 'punch-frees-before-zap' });
    let online: Violation | null = null;
    await eachSchedule(e, 1, 300, (r) => (online = r.violations.find((v) => v.by.endsWith('(online)')) ?? null) !== null);
    expect(online).not.toBeNull();
    expect(online!.invariant).toBe('useAfterFree');
    expect(online!.detail).toMatch(/^at a scheduling point, vm \d's SPTE for gfn \d+ maps pfn \d+, which is on the free list$/);
  }, 60_000);
});

describe('a vCPU descheduled mid-access, in guest mode', () => {
  it("makes a zap's TLB flush wait for it (kvm_flush_remote_tlbs), and the schedules stay clean", async () => {
    const e = explorer({ kernel: 'upstream', workload: workloadFor(null, { ops: 'punch=3,convert=1', vmmOps: 4, multiVmShare: 0 }) });
    let waits = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const r = await e.runSchedule(seed);
      if (r.violations.length > 0) expect.fail(`seed ${seed}: ${JSON.stringify(r.violations[0])}`);
      waits += sumStats(e.mem()).tlbFlushWaits;
    }
    expect(waits).toBeGreaterThan(0);
  }, 60_000);
});

describe('random layouts', () => {
  it('vary the gfn base, the file offsets, and one file or two behind the two memslots, and always map the range exactly', () => {
    const seen = { gfnNotIndex: 0, twoFiles: 0, oneFileTwoSlots: 0 };
    for (let seed = 1; seed <= 60; seed++) {
      const [a, b] = randomLayout(4, seed);
      expect(a.gfn + a.npages).toBe(b.gfn);
      expect(a.npages + b.npages).toBe(4);
      expect(a.npages).toBeGreaterThan(0);
      if (a.gfn !== a.pgoff || b.gfn !== b.pgoff) seen.gfnNotIndex++;
      if (a.file !== b.file) seen.twoFiles++;
      else {
        seen.oneFileTwoSlots++;
        // Two slots on one file never bind the same index.
        expect(b.pgoff).toBeGreaterThanOrEqual(a.pgoff + a.npages);
      }
    }
    expect(seen.gfnNotIndex).toBeGreaterThan(40);
    expect(seen.twoFiles).toBeGreaterThan(10);
    expect(seen.oneFileTwoSlots).toBeGreaterThan(10);
  });
});
