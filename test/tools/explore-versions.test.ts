// Each kernel version runs its page operations clean, and the historical bugs of the catalogue
// are found on their buggy version and not on the fixed one or with their fixing patch (the
// pre-fault deadlock fixed by 3ccbf6f47098, the dying-file unbind by ae431059e75d, the flags toggle
// by 9935df5333aa, the LAUNCH_FINISH bugs by cb923ee6a80f and 9b9f7962e3e8...); upstream breaks
// nothing but its known bugs.

import { afterAll, describe, expect, it } from 'vitest';
import { KERNEL_VERSIONS, type KernelVersionName, UPSTREAM } from '../../src/gmem/version.js';
import { CATALOGUE, knownBug } from '../../src/vmm/explore/catalogue.js';
import { VMM_OPS } from '../../src/vmm/workload/mix.js';
import { type Explorer, type ScheduleResult, workloadFor } from '../../src/vmm/explore/explorer.js';
import type { Violation } from '../../src/checker/violations.js';
import { closeExplorers, eachSchedule, explorer } from '../helpers/explore-helpers.js';

afterAll(closeExplorers);

const PAGE_OPS = 'punch=3,convert=1,fallocate=1,prefault=1';

describe('each version survives 120 schedules of page operations (its prepare logic is clean)', () => {
  it.each([...KERNEL_VERSIONS])(
    '%s',
    async (kernel) => {
      const e = explorer({ kernel, workload: workloadFor(null, { ops: PAGE_OPS, vmmOps: 3 }) });
      const outcomes: Record<string, number> = {};
      await eachSchedule(e, 1, 120, (r) => {
        outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
        if (r.violations.length > 0) expect.fail(`seed ${r.seed}: ${JSON.stringify(r.violations[0])}`);
      });
      expect(outcomes.ok).toBe(120);
    },
    120_000,
  );
});

describe('historical bugs, found by running the version that had them', () => {
  /** Schedules until the first violation (0: none), that schedule, and its details. */
  async function hunt(e: Explorer, n: number, kernel: KernelVersionName, id: string) {
    let found: { seed: number; r: ScheduleResult | null; details: string[] } = { seed: 0, r: null, details: [] };
    await eachSchedule(e, 1, n, (r) => {
      if (r.outcome === 'violation' || r.outcome === 'deadlock') {
        // Another known bug of that kernel on the way is set aside, as explore does.
        const known = knownBug(kernel, r.violations);
        if (known !== null && known.id !== id) return;
        found = { seed: r.seed, r, details: r.violations.map((v) => v.detail) };
        return true;
      }
      expect(r.outcome, `seed ${r.seed}`).toBe('ok');
    });
    return found;
  }

  const explorable = CATALOGUE.filter((b) => b.workload !== undefined);
  it.each(explorable.map((b) => [b.id, b] as const))(
    '%s: its buggy version finds it, its fixed version (if any) and its fixing patch (if any) run the seeds up to it clean',
    async (_id, bug) => {
      const workload = workloadFor(null, bug.workload);
      const kernel = bug.buggy[bug.buggy.length - 1];
      const buggy = await hunt(explorer({ kernel, workload }), 300, kernel, bug.id);
      expect(buggy.seed, 'found on the buggy version').toBeGreaterThan(0);
      // The bug's own report is there; the first may be another it makes in that interleaving.
      expect([bug.invariant, ...(bug.alsoReports ?? []).map((a) => a.invariant)]).toContain(buggy.r!.violations[0].invariant);
      expect(buggy.details).toContainEqual(expect.stringMatching(bug.detail));
      expect(knownBug(kernel, buggy.r!.violations)?.id).toBe(bug.id);
      // The fix runs the seeds the buggy version needed (at least 40), the failing one included.
      const same = Math.max(40, buggy.seed);
      if (bug.fixedByPatch !== undefined) {
        const patched = await hunt(explorer({ kernel, patches: [bug.fixedByPatch], workload }), same, kernel, bug.id);
        expect(patched.seed, `clean with --patch ${bug.fixedByPatch}`).toBe(0);
      }
      if (bug.fixed.length === 0) return;
      const fixed = await hunt(explorer({ kernel: bug.fixed[0], workload }), same, bug.fixed[0], bug.id);
      expect(fixed.seed, 'clean on the fixed version').toBe(0);
    },
    90_000,
  );

  it('the pre-fault deadlock report names every blocked actor, what it waits on and who holds it, and the schedule replays exactly', async () => {
    const bug = CATALOGUE.find((b) => b.id === 'prefault-memslot-deadlock')!;
    const e = explorer({ kernel: '6.11', workload: workloadFor(null, bug.workload) });
    const found = await hunt(e, 300, '6.11', bug.id);
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

  it('upstream breaks nothing but its known bugs in 150 schedules of the default workload, which reaches every operation, link, a launching VM and a default VM on GMEM_ONLY memslots', async () => {
    const e = explorer({ kernel: 'upstream' });
    const ops = Object.fromEntries(VMM_OPS.map((o) => [o, 0]));
    const shapes = { one: 0, linked: 0, launchingBeside: 0, gmemOnly: 0 };
    await eachSchedule(e, 1, 150, (r) => {
      if (r.violations.length > 0 && knownBug(UPSTREAM, r.violations) === null)
        expect.fail(`seed ${r.seed}: ${JSON.stringify(r.violations[0])}`);
      for (const o of VMM_OPS) ops[o] += r.ops[o];
      if (r.shape.launchingBeside) shapes.launchingBeside++;
      else if (r.shape.vms > 1) shapes.linked++;
      else if (r.shape.gmemOnly) shapes.gmemOnly++;
      else shapes.one++;
    });
    // In-place conversion's ops need 7.4 with gmem_in_place_conversion (explore-conversion.test.ts).
    const inPlace = ['convert2', 'pin'];
    for (const o of VMM_OPS) expect(ops[o], o)[inPlace.includes(o) ? 'toBe' : 'toBeGreaterThan'](0);
    expect(shapes.linked).toBeGreaterThan(5);
    expect(shapes.launchingBeside).toBeGreaterThan(5);
    expect(shapes.gmemOnly).toBeGreaterThan(20);
    expect(shapes.one + shapes.gmemOnly).toBeGreaterThan(100);
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
