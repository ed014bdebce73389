// Controlled schedules (vmm/explore): the same seed gives the same interleaving, a failing schedule
// replays from its choices and shrinks, batches equal single runs, hung and dead workers are
// reported; every planted bug is found; and a zap's TLB flush waits for a vCPU in guest mode
// (kvm_flush_remote_tlbs). Versions and the historical catalogue: explore-versions.test.ts.

import { afterAll, describe, expect, it } from 'vitest';
import { BUGS, BUG_NAMES, type BugName } from '../../src/gmem/bugs.js';
import { Explorer, type ScheduleResult, switchesIn, workloadFor } from '../../src/vmm/explore/explorer.js';
import { ExplorePool } from '../../src/vmm/explore/pool.js';
import { Bell } from '../../src/shm/bell.js';
import { INVARIANTS, type Violation } from '../../src/checker/violations.js';
import { sumStats } from '../../src/shm/stats.js';
import type { VcpuActor } from '../../src/vmm/sandbox/runtime.js';
import { TEST_VCPU_WORKER, testHooks } from '../helpers/runtime-helpers.js';
import { closeExplorers, config, eachSchedule, explorer, ownExplorer } from '../helpers/explore-helpers.js';

afterAll(closeExplorers);

/** Own explorers a test left usable, for a later test that needs one of its own (hooked: on the test vCPU worker). */
const spares: Explorer[] = [];
const hooked: Explorer[] = [];

describe('controlled schedules', () => {
  it('the same seed gives the same interleaving, trace and outcome', async () => {
    const a = explorer();
    const b = ownExplorer();
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
    spares.push(b);
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
    const ran = a.schedulesRun;
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
    expect(a.schedulesRun - ran).toBe(2 * seeds.length);
  });

  it('a batch stops at its first failing schedule, and a pool of two explorers reports the seed one explorer does', async () => {
    const bug = 'fault-skips-seq-recheck' as const;
    const e = explorer({ bug });
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
    const e = spares.pop() ?? ownExplorer();
    e.cfg = config({ scheduleTimeoutMs: 1000 });
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
    const e = hooked.pop() ?? ownExplorer({}, { vcpuWorker: TEST_VCPU_WORKER });
    e.cfg = config({ scheduleTimeoutMs: 3000 });
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
    hooked.push(e);
  });

  it('a worker that died fails the batch at once, naming it, and close does not hang', async () => {
    const e = hooked.pop() ?? ownExplorer({}, { vcpuWorker: TEST_VCPU_WORKER });
    e.cfg = config();
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

describe('planted bugs: races need a preemption, the others do not', () => {
  it.each(BUG_NAMES)('%s', async (bug: BugName) => {
    const e = explorer({ bug });
    let found = 0;
    // Forced choices [] = no preemption anywhere: each actor runs until it blocks or exits. A
    // race must stay hidden in all 40 schedules; any other bug needs only one to show.
    await eachSchedule(e, 1, 40, (r) => r.outcome !== 'ok' && ++found > 0 && !BUGS[bug].race, []);
    if (BUGS[bug].race) expect(found, 'a race is never shown without preemption').toBe(0);
    else expect(found, 'not a race: some schedule without preemption shows it').toBeGreaterThan(0);
  });
});

describe('planted bugs are each found within 1,000 schedules', () => {
  it.each(BUG_NAMES)('%s', async (bug: BugName) => {
    const e = explorer({ bug });
    let found = 0;
    await eachSchedule(e, 1, 1000, (r) => {
      if (r.outcome === 'ok' || r.outcome === 'step-limit') return false;
      found = r.seed;
      // A planted bug breaks an invariant; none of them deadlocks (the lock inversion's deadlock
      // is reported by lockdep before the scheduler could see it).
      expect(r.outcome).toBe('violation');
      expect(INVARIANTS).toContain(r.violations[0].invariant);
      return true;
    });
    expect(found).toBeGreaterThan(0);
  });

  // PCT reaches convert-checks-refs-before-unmap only at schedule 664 (docs/explorer.md): eight
  // seconds here for a bug the random walk above finds at 174.
  const PCT_SLOW: readonly BugName[] = ['convert-checks-refs-before-unmap'];
  it.each(BUG_NAMES.filter((b) => !PCT_SLOW.includes(b)))('%s, by PCT (depth 3)', async (bug: BugName) => {
    const e = explorer({ bug, strategy: 'pct' });
    let found = 0;
    await eachSchedule(e, 1, 1000, (r) => r.outcome === 'violation' && (found = r.seed) > 0);
    expect(found).toBeGreaterThan(0);
  });
});

/** The VMM ops that touch no object lifetime: each version's prepare logic alone. */
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
    await eachSchedule(e, 1, 40, (r) => {
      if (r.violations.length > 0) expect.fail(`seed ${r.seed}: ${JSON.stringify(r.violations[0])}`);
    });
    // The counters are the last schedule's: one at a time until one flush waited.
    let waits = 0;
    for (let seed = 1; seed <= 40 && waits === 0; seed++) {
      await e.runSchedule(seed);
      waits = sumStats(e.mem()).tlbFlushWaits;
    }
    expect(waits).toBeGreaterThan(0);
  }, 60_000);
});
