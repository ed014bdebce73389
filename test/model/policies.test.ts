// The three prepare policies, as the kernel versions they name: b85524314a prepares once per
// folio for every VM bound to the inode (kvm_gmem_prepare_folio), 6dd761d92f66 for the faulting VM
// only, and 6.10 (prepare-on-allocate) at fallocate and on every fault; populate of an up-to-date
// page (de80252414f3: -EEXIST in kvm_gmem_populate, before it refused in sev_gmem_post_populate).

import { describe, expect, it } from 'vitest';
import { POLICIES, type PolicyName } from '../../src/index.js';
import {
  MiB,
  PAGE_SIZE,
  dataOf,
  expectHostIsolation,
  faultAndValidate,
  filled,
  image,
  linkSecondVm,
  setupVm,
  statsDelta,
} from '../helpers/helpers.js';

interface Expect {
  /** fallocate clears, marks up to date and registers the page with the bound SNP VM. */
  fallocatePrepares: boolean;
  /**
   * kvm_gmem_populate of a page already up to date: EEXIST in common code since de80252414f3;
   * before it the page reaches sev_gmem_post_populate, which refuses its assigned RMP entry.
   */
  populateUptodate: 'EEXIST' | 'EINVAL';
  /** Every fault runs arch prepare, even on an up-to-date folio. */
  archPrepareEveryFault: boolean;
  /** arch prepare calls for the first fault of a page with two SNP VMs bound. */
  archPrepareCallsTwoVms: number;
  /** Which VM's ASID a page faulted by VM A ends up with when B's file is newest. */
  ownerWhenAFaults: 'A' | 'B';
}

const TABLE: Record<PolicyName, Expect> = {
  'prepare-on-allocate': {
    populateUptodate: 'EINVAL',
    fallocatePrepares: true,
    archPrepareEveryFault: true,
    archPrepareCallsTwoVms: 2,
    ownerWhenAFaults: 'B',
  },
  'prepare-on-fault': {
    populateUptodate: 'EINVAL',
    fallocatePrepares: false,
    archPrepareEveryFault: false,
    archPrepareCallsTwoVms: 2,
    ownerWhenAFaults: 'B',
  },
  'prepare-on-fault-own-vm': {
    populateUptodate: 'EEXIST',
    fallocatePrepares: false,
    archPrepareEveryFault: false,
    archPrepareCallsTwoVms: 1,
    ownerWhenAFaults: 'A',
  },
  // 8622ef05709f: the hook runs on every fault and leaves an assigned page alone; populate's
  // refusal of a populated page moved to sev_gmem_post_populate (EEXIST there since de80252414f3).
  'prepare-on-every-fault': {
    populateUptodate: 'EEXIST',
    fallocatePrepares: false,
    archPrepareEveryFault: true,
    archPrepareCallsTwoVms: 1,
    ownerWhenAFaults: 'A',
  },
};

describe.each(POLICIES.map((p) => [p, TABLE[p]] as const))('policy %s', (policy, want) => {
  it('fallocate: folio uptodate and RMP state', async () => {
    const { sb, vm, gmem } = await setupVm({ policy, type: 'snp', launch: 'started' });
    const d = await statsDelta(sb, ['archPrepareCalls', 'prepares', 'clears', 'rmpUpdates'], () =>
      gmem.fallocate(['keep_size'], 0, 2 * PAGE_SIZE),
    );
    const n = want.fallocatePrepares ? 2 : 0;
    expect(d).toEqual({ archPrepareCalls: n, prepares: n, clears: n, rmpUpdates: n });
    for (const gpa of [0, PAGE_SIZE]) {
      const folio = gmem.folioAt(gpa)!;
      expect(folio).toMatchObject({ uptodate: want.fallocatePrepares, hwpoison: false, refcount: 1 });
      expect(vm.rmpQuery(gpa)).toEqual(
        want.fallocatePrepares
          ? { present: true, pfn: folio.pfn, assigned: true, asid: vm.asid, gpa, validated: false, immutable: false }
          : { present: true, pfn: folio.pfn, assigned: false, asid: 0, gpa: 0, validated: false, immutable: false },
      );
    }
    expectHostIsolation(sb);
  });

  it('fallocate then LAUNCH_UPDATE of the same range', async () => {
    const { sb, vm, gmem, vcpu } = await setupVm({ policy, type: 'snp', launch: 'started' });
    await gmem.fallocate(['keep_size'], 0, 2 * PAGE_SIZE);
    const data = new Uint8Array(2 * PAGE_SIZE);
    data.set(image(1), 0);
    data.set(image(2), PAGE_SIZE);
    const r = vm.snpLaunchUpdate({ gpa: 0, len: 2 * PAGE_SIZE, data });
    if (want.fallocatePrepares) {
      // The pages are already assigned (by fallocate's arch prepare): sev_gmem_post_populate refuses them.
      await expect(r).rejects.toMatchObject({ code: 'EIO', errno: 5, populateError: 'EINVAL' });
      expect(vm.snpLaunchDigest()).toBe('00'.repeat(48));
    } else {
      await expect(r).resolves.toEqual({ pagesDone: 2 });
      await vm.snpLaunchFinish();
      expect(dataOf(await vcpu.read(0, PAGE_SIZE))).toEqual([...image(1)]);
      expect(dataOf(await vcpu.read(PAGE_SIZE, PAGE_SIZE))).toEqual([...image(2)]);
      expect(vm.rmpQuery(PAGE_SIZE)).toMatchObject({ assigned: true, asid: vm.asid, gpa: PAGE_SIZE, validated: true });
    }
    expectHostIsolation(sb);
  });

  it(`LAUNCH_UPDATE of the same page twice: EIO with populateError ${want.populateUptodate}`, async () => {
    const { sb, vm, vcpu } = await setupVm({ policy, type: 'snp', launch: 'started' });
    await vm.snpLaunchUpdate({ gpa: 0, data: image(1) });
    const digest = vm.snpLaunchDigest();
    await expect(vm.snpLaunchUpdate({ gpa: 0, data: image(2) })).rejects.toMatchObject({
      code: 'EIO',
      populateError: want.populateUptodate,
    });
    expect(vm.snpLaunchDigest()).toBe(digest);
    await vm.snpLaunchFinish();
    expect(dataOf(await vcpu.read(0, PAGE_SIZE))).toEqual([...image(1)]);
    expectHostIsolation(sb);
  });

  it('a fault clears once and runs arch prepare once, or on every fault (prepare-on-allocate)', async () => {
    const { sb, vm, vcpu } = await setupVm({ policy, type: 'snp', launch: 'finished' });
    const d1 = await statsDelta(sb, ['archPrepareCalls', 'prepares', 'clears'], () => faultAndValidate(vcpu, 0));
    expect(d1).toEqual({ archPrepareCalls: 1, prepares: 1, clears: 1 });
    await vcpu.write(0, Uint8Array.of(4, 2));
    // Zap the SPTE with a conversion round trip and fault again.
    await vm.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: 'shared' });
    await vm.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: 'private' });
    const d2 = await statsDelta(sb, ['faults', 'archPrepareCalls', 'prepares', 'clears', 'rmpUpdates'], async () => {
      expect(dataOf(await vcpu.read(0, 2))).toEqual([4, 2]);
    });
    // A repeated arch prepare finds the page assigned and changes nothing.
    expect(d2).toEqual({ faults: 1, archPrepareCalls: want.archPrepareEveryFault ? 1 : 0, prepares: 0, clears: 0, rmpUpdates: 0 });
    expect(vm.rmpQuery(0)).toMatchObject({ assigned: true, asid: vm.asid, validated: true });
    expectHostIsolation(sb);
  });

  it('two SNP VMs on one inode: who owns a page VM A faults', async () => {
    const a = await setupVm({ policy, type: 'snp', launch: 'finished' });
    const b = await linkSecondVm(a, { launch: 'none' });
    await b.vm.snpLaunchStart();
    await b.vm.snpLaunchFinish();
    expect(a.vm.asid).not.toBe(b.vm.asid);
    const gpa = 6 * PAGE_SIZE;
    let ra: Awaited<ReturnType<typeof a.vcpu.read>> | undefined;
    const d = await statsDelta(a.sb, ['archPrepareCalls', 'archPrepareCallsOtherVm', 'rmpUpdates', 'faults'], async () => {
      ra = await a.vcpu.read(gpa, 8);
    });
    // Every call past the one for A itself was made for B.
    expect(d).toEqual({
      archPrepareCalls: want.archPrepareCallsTwoVms,
      archPrepareCallsOtherVm: want.archPrepareCallsTwoVms - 1,
      rmpUpdates: 1,
      faults: 1,
    });
    const pfn = a.gmem.folioAt(gpa)!.pfn;
    expect(b.gmem.folioAt(gpa)!.pfn).toBe(pfn);
    if (want.ownerWhenAFaults === 'B') {
      // B's file is newest, first in list order: B got the page, A's own access violates.
      expect(a.vm.rmpQuery(gpa)).toEqual({ present: true, pfn, assigned: true, asid: b.vm.asid, gpa, validated: false, immutable: false });
      expect(ra).toEqual({ ok: false, exit: 'rmp_violation' });
      expect(await a.vcpu.pvalidate(gpa)).toEqual({ ok: false, exit: 'rmp_violation' });
      // B can use the page it was given.
      await faultAndValidate(b.vcpu, gpa);
      expect(dataOf(await b.vcpu.read(gpa, 8))).toEqual(filled(8, 0));
    } else {
      // A faulted, A owns it; only B's later access violates.
      expect(a.vm.rmpQuery(gpa)).toEqual({ present: true, pfn, assigned: true, asid: a.vm.asid, gpa, validated: false, immutable: false });
      expect(ra).toEqual({ ok: false, exit: 'vc' });
      expect(await a.vcpu.pvalidate(gpa)).toEqual({ ok: true, code: 0 });
      expect(dataOf(await a.vcpu.read(gpa, 8))).toEqual(filled(8, 0));
      const d2 = await statsDelta(a.sb, ['archPrepareCalls'], async () => {
        expect(await b.vcpu.read(gpa, 8)).toEqual({ ok: false, exit: 'rmp_violation' });
      });
      // B's fault asks the hook too from 7.0, which finds the page assigned and leaves it.
      expect(d2.archPrepareCalls).toBe(want.archPrepareEveryFault ? 1 : 0);
    }
    expect(a.sb.stats().rmpViolations).toBeGreaterThanOrEqual(1);
    expectHostIsolation(a.sb);
  });

  it('two SNP VMs on one inode: fallocate registers with the first bound VM in list order (prepare-on-allocate only)', async () => {
    const a = await setupVm({ policy, type: 'snp', launch: 'started' });
    const b = await linkSecondVm(a, { gpa: MiB, slotSize: MiB });
    const d = await statsDelta(a.sb, ['archPrepareCalls', 'archPrepareCallsOtherVm'], () => a.gmem.fallocate(['keep_size'], 0, PAGE_SIZE));
    // No VM faulted, so none of the calls is on another VM's behalf.
    expect(d.archPrepareCallsOtherVm).toBe(0);
    if (want.fallocatePrepares) {
      expect(d.archPrepareCalls).toBe(2);
      // B (newest file) gets the page at B's gpa for that offset.
      expect(b.vm.rmpQuery(MiB)).toMatchObject({ assigned: true, asid: b.vm.asid, gpa: MiB, validated: false });
    } else {
      expect(d.archPrepareCalls).toBe(0);
      expect(b.vm.rmpQuery(MiB)).toMatchObject({ present: true, assigned: false });
    }
    expectHostIsolation(a.sb);
  });
});
