// Races between real vCPU and VMM worker threads, made exact with pause points: two vCPUs
// faulting one gfn get one folio and one prepare (kvm_gmem_get_pfn under the folio lock;
// prepare-on-allocate's arch prepare on each fault), and a conversion racing a fault makes it retry
// (mmu_invalidate_retry_gfn after kvm_mmu_invalidate_begin/end), exiting on a changed attribute.

import { afterEach, describe, expect, it } from 'vitest';
import { pointId } from '../../src/shm/points.js';
import type { Runtime } from '../../src/vmm/sandbox/runtime.js';
import {
  EXIT_FLAG_PRIVATE,
  PAGE,
  assignedPfns,
  expectOk,
  expectQuiescentAuditClean,
  expectTeardownAuditClean,
  setupVm,
  shutdownAll,
  startRuntime,
} from '../helpers/runtime-helpers.js';

afterEach(shutdownAll);

const PICK = ['faults', 'faultRetries', 'foliosAllocated', 'prepares', 'archPrepareCalls', 'sptesInstalled', 'memoryFaultExits'] as const;
function counters(rt: Runtime): Record<(typeof PICK)[number], number> {
  const s = rt.stats();
  return Object.fromEntries(PICK.map((k) => [k, s[k]])) as Record<(typeof PICK)[number], number>;
}

/** Holds both vCPUs of VM 'a' at `point`, starts a read of `gpa` on each, then lets both go at once. */
async function twoReadsAtOnce(rt: Runtime, point: string, gpa: number): Promise<[unknown, unknown]> {
  const [c0, c1] = [rt.vcpu('a', 0), rt.vcpu('a', 1)];
  const s0 = rt.control.armPause(pointId(point), c0.tid);
  const s1 = rt.control.armPause(pointId(point), c1.tid);
  const r0 = rt.call(c0, () => c0.api.exec({ op: 'guest_read', gpa, len: 4 }));
  const r1 = rt.call(c1, () => c1.api.exec({ op: 'guest_read', gpa, len: 4 }));
  expect(await rt.control.whenHeld(s0, 5000)).toBe(c0.tid);
  expect(await rt.control.whenHeld(s1, 5000)).toBe(c1.tid);
  // Both faults are inside the fault path now, past the SPTE check, neither has a folio yet.
  expect(rt.stats().foliosAllocated).toBe(0);
  rt.control.release(s0);
  rt.control.release(s1);
  return Promise.all([r0, r1]);
}

describe('two vCPUs faulting one gfn at once', () => {
  for (const policy of ['prepare-on-fault', 'prepare-on-fault-own-vm'] as const) {
    it(`SNP, ${policy}: one folio, one prepare, one RMP assignment; both see #VC`, async () => {
      const rt = await startRuntime(policy);
      await setupVm(rt, 'snp', 2);
      const gpa = 0x5000;
      const outs = await twoReadsAtOnce(rt, 'fault.before_get_pfn', gpa);
      expect(outs).toEqual([
        { result: 'vc', exit: 'vc' },
        { result: 'vc', exit: 'vc' },
      ]);
      expect(counters(rt)).toEqual({
        faults: 2,
        faultRetries: 0,
        foliosAllocated: 1,
        prepares: 1,
        archPrepareCalls: 1,
        sptesInstalled: 2,
        memoryFaultExits: 0,
      });
      const q = expectOk(await rt.vmm.api.exec({ op: 'rmp_query', vm: 'a', gpa }));
      const rmp = q.value as { present: boolean; pfn: number; assigned: boolean; asid: number; gpa: number; validated: boolean };
      expect(rmp).toMatchObject({ present: true, assigned: true, gpa, validated: false });
      expect(rmp.asid).toBeGreaterThan(0);
      // Exactly one pfn in the whole RMP is guest-owned: this one, for this VM, at this gfn.
      expect(assignedPfns(rt)).toEqual([{ pfn: rmp.pfn, asid: rmp.asid, gfn: gpa / PAGE }]);
      expectQuiescentAuditClean(rt);
      await expectTeardownAuditClean(rt);
    });
  }

  it('SNP, prepare-on-allocate: one folio and one clear, but the arch prepare runs on each fault (6.10)', async () => {
    const rt = await startRuntime('prepare-on-allocate');
    await setupVm(rt, 'snp', 2);
    const outs = await twoReadsAtOnce(rt, 'fault.before_get_pfn', 0x5000);
    expect(outs).toEqual([
      { result: 'vc', exit: 'vc' },
      { result: 'vc', exit: 'vc' },
    ]);
    expect(counters(rt)).toEqual({
      faults: 2,
      faultRetries: 0,
      foliosAllocated: 1,
      prepares: 1,
      archPrepareCalls: 2,
      sptesInstalled: 2,
      memoryFaultExits: 0,
    });
    expect(assignedPfns(rt)).toHaveLength(1);
    expectQuiescentAuditClean(rt);
    await expectTeardownAuditClean(rt);
  });

  it('sw-protected: one folio, one prepare (clear), no arch prepare; both read zeros', async () => {
    const rt = await startRuntime('prepare-on-fault-own-vm');
    await setupVm(rt, 'sw-protected', 2);
    const outs = await twoReadsAtOnce(rt, 'fault.before_get_pfn', 0x5000);
    expect(outs).toEqual([
      { result: 'ok', value: '00000000' },
      { result: 'ok', value: '00000000' },
    ]);
    expect(counters(rt)).toEqual({
      faults: 2,
      faultRetries: 0,
      foliosAllocated: 1,
      prepares: 1,
      archPrepareCalls: 0,
      sptesInstalled: 2,
      memoryFaultExits: 0,
    });
    expect(assignedPfns(rt)).toEqual([]);
    expectQuiescentAuditClean(rt);
    await expectTeardownAuditClean(rt);
  });
});

describe('a conversion racing a fault makes the fault retry', () => {
  /** Holds vCPU 0's access to gpa after get_pfn, before mmu_lock; runs `convert` on the VMM meanwhile. */
  async function raceConversion(
    rt: Runtime,
    gpa: number,
    convert: { address: number; size: number; attributes: 'private' | 'shared' },
  ): Promise<unknown> {
    const c = rt.vcpu('a', 0);
    const slot = rt.control.armPause(pointId('fault.before_mmu_lock'), c.tid);
    const read = rt.call(c, () => c.api.exec({ op: 'guest_read', gpa, len: 4 }));
    expect(await rt.control.whenHeld(slot, 5000)).toBe(c.tid);
    const before = rt.stats().conversions;
    expectOk(await rt.vmm.api.exec({ op: 'set_memory_attributes', vm: 'a', ...convert }));
    expect(rt.stats().conversions).toBe(before + 1);
    rt.control.release(slot);
    return read;
  }

  it('private -> shared of the faulting gfn: the retried fault exits to the VMM (memory fault), no SPTE', async () => {
    const rt = await startRuntime('prepare-on-fault-own-vm');
    await setupVm(rt, 'snp', 1);
    const gpa = 0x3000;
    const out = await raceConversion(rt, gpa, { address: gpa, size: PAGE, attributes: 'shared' });
    expect(out).toEqual({
      result: 'memory_fault',
      exit: 'memory_fault',
      value: { errno: 'EFAULT', gpa, size: PAGE, flags: EXIT_FLAG_PRIVATE },
    });
    // get_pfn ran once before the conversion (the folio was prepared); the retry exited before get_pfn.
    expect(counters(rt)).toEqual({
      faults: 1,
      faultRetries: 1,
      foliosAllocated: 1,
      prepares: 1,
      archPrepareCalls: 1,
      sptesInstalled: 0,
      memoryFaultExits: 1,
    });
    // The fault dropped its folio reference on the retry: the folio is cached with refcount 1.
    expectQuiescentAuditClean(rt);
    await expectTeardownAuditClean(rt);
  });

  it('shared -> private of the faulting gfn: the retried shared fault exits (memory fault, flags 0)', async () => {
    const rt = await startRuntime('prepare-on-fault-own-vm');
    await setupVm(rt, 'snp', 1);
    const gpa = 0x3000;
    expectOk(await rt.vmm.api.exec({ op: 'set_memory_attributes', vm: 'a', address: gpa, size: PAGE, attributes: 'shared' }));
    const before = rt.stats().conversions;
    const c = rt.vcpu('a', 0);
    const slot = rt.control.armPause(pointId('fault.before_mmu_lock'), c.tid);
    const read = rt.call(c, () => c.api.exec({ op: 'guest_read', gpa, len: 4, private: false }));
    expect(await rt.control.whenHeld(slot, 5000)).toBe(c.tid);
    expectOk(await rt.vmm.api.exec({ op: 'set_memory_attributes', vm: 'a', address: gpa, size: PAGE, attributes: 'private' }));
    expect(rt.stats().conversions).toBe(before + 1);
    rt.control.release(slot);
    expect(await read).toEqual({ result: 'memory_fault', exit: 'memory_fault', value: { errno: 'EFAULT', gpa, size: PAGE, flags: 0 } });
    // A shared fault never touches guest_memfd.
    expect(counters(rt)).toEqual({
      faults: 1,
      faultRetries: 1,
      foliosAllocated: 0,
      prepares: 0,
      archPrepareCalls: 0,
      sptesInstalled: 0,
      memoryFaultExits: 1,
    });
    expectQuiescentAuditClean(rt);
    await expectTeardownAuditClean(rt);
  });

  it('converting an unrelated range still bumps mmu_invalidate_seq: the fault retries once, then maps the page', async () => {
    const rt = await startRuntime('prepare-on-fault-own-vm');
    await setupVm(rt, 'sw-protected', 1);
    const gpa = 0x3000;
    const out = await raceConversion(rt, gpa, { address: 0x80000, size: 16 * PAGE, attributes: 'shared' });
    expect(out).toEqual({ result: 'ok', value: '00000000' });
    // The retry ran get_pfn again on the now up-to-date folio: no second allocation or prepare.
    expect(counters(rt)).toEqual({
      faults: 1,
      faultRetries: 1,
      foliosAllocated: 1,
      prepares: 1,
      archPrepareCalls: 0,
      sptesInstalled: 1,
      memoryFaultExits: 0,
    });
    // The page stays mapped: a second read does not fault.
    const c = rt.vcpu('a', 0);
    expect(await c.api.exec({ op: 'guest_read', gpa, len: 4 })).toEqual({ result: 'ok', value: '00000000' });
    expect(rt.stats().faults).toBe(1);
    expectQuiescentAuditClean(rt);
    await expectTeardownAuditClean(rt);
  });

  it('a fault that finds the conversion in progress waits for it, then exits', async () => {
    const rt = await startRuntime('prepare-on-fault-own-vm');
    await setupVm(rt, 'snp', 1);
    const gpa = 0x3000;
    const vslot = rt.control.armPause(pointId('set_attributes.after_invalidate_begin'), rt.vmm.tid);
    const conv = rt.call(rt.vmm, () =>
      rt.vmm.api.exec({ op: 'set_memory_attributes', vm: 'a', address: gpa, size: PAGE, attributes: 'shared' }),
    );
    await rt.control.whenHeld(vslot, 5000);
    const c = rt.vcpu('a', 0);
    const read = rt.call(c, () => c.api.exec({ op: 'guest_read', gpa, len: 4, private: true }));
    // The fault is stuck retrying on the in-progress invalidation: never reaches get_pfn.
    const deadline = Date.now() + 5000;
    while (rt.stats().faultRetries === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    expect(rt.stats().faultRetries).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(rt.stats().foliosAllocated).toBe(0);
    expect(rt.stats().sptesInstalled).toBe(0);
    rt.control.release(vslot);
    expectOk(await conv);
    expect(await read).toEqual({
      result: 'memory_fault',
      exit: 'memory_fault',
      value: { errno: 'EFAULT', gpa, size: PAGE, flags: EXIT_FLAG_PRIVATE },
    });
    expect(rt.stats().foliosAllocated).toBe(0);
    expect(rt.stats().faultRetries).toBeGreaterThanOrEqual(1);
    expectQuiescentAuditClean(rt);
    await expectTeardownAuditClean(rt);
  });
});
