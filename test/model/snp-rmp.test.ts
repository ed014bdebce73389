// SNP firmware and the RMP (arch/x86/virt/svm/sev.c rmp_make_private / rmp_make_shared; arch/x86/
// kvm/svm/sev.c sev_gmem_prepare, sev_gmem_invalidate): pages start hypervisor-owned, an SNP VM has
// its ASID, arch prepare assigns without validating (#VC until PVALIDATE), PVALIDATE's
// FAIL_NOUPDATE, an access at another GPA is an RMP violation, a freed folio's pfn is
// hypervisor-owned again, and no host write reaches a guest page under any policy.

import { describe, expect, it } from 'vitest';
import { HOST_PATTERN, POLICIES, PvalidateRet } from '../../src/index.js';
import {
  HYPERVISOR_OWNED,
  MiB,
  PAGE_SIZE,
  dataOf,
  expectFreedPfn,
  expectHostIsolation,
  faultAndValidate,
  filled,
  image,
  linkSecondVm,
  rmpOfPfn,
  setupVm,
  smallSandbox,
  statsDelta,
} from '../helpers/helpers.js';

describe('RMP ownership', () => {
  it('every host page starts hypervisor-owned, including a freshly allocated folio', async () => {
    const { sb, vm, gmem } = await setupVm({ policy: 'prepare-on-fault', type: 'snp' });
    const nrPfns = sb.mem.limits.nrPfns;
    for (const pfn of [0, 1, nrPfns >> 1, nrPfns - 1]) expect(rmpOfPfn(sb, pfn)).toEqual(HYPERVISOR_OWNED);
    await gmem.fallocate(['keep_size'], 0, PAGE_SIZE);
    const pfn = gmem.folioAt(0)!.pfn;
    expect(vm.rmpQuery(0)).toEqual({ present: true, pfn, ...HYPERVISOR_OWNED });
  });

  it('an SNP VM has its ASID from creation; ASIDs differ; other VM types have none', async () => {
    const sb = await smallSandbox();
    const a = await sb.createVm({ type: 'snp' });
    const b = await sb.createVm({ type: 'snp' });
    const d = await sb.createVm({ type: 'default' });
    const s = await sb.createVm({ type: 'sw-protected' });
    expect(a.asid).toBeGreaterThan(0);
    expect(b.asid).toBeGreaterThan(0);
    expect(a.asid).not.toBe(b.asid);
    expect([d.asid, s.asid]).toEqual([0, 0]);
  });

  it('arch prepare (runtime fault) makes the page guest-owned but not validated: access raises #VC', async () => {
    const { sb, vm, vcpu, gmem } = await setupVm({ type: 'snp', launch: 'finished' });
    const gpa = 9 * PAGE_SIZE;
    const d = await statsDelta(sb, ['vcExceptions'], async () => {
      expect(await vcpu.read(gpa, 4)).toEqual({ ok: false, exit: 'vc' });
      expect(await vcpu.write(gpa, Uint8Array.of(1))).toEqual({ ok: false, exit: 'vc' });
    });
    expect(d.vcExceptions).toBe(2);
    expect(vm.rmpQuery(gpa)).toEqual({
      present: true,
      pfn: gmem.folioAt(gpa)!.pfn,
      assigned: true,
      asid: vm.asid,
      gpa,
      validated: false,
      immutable: false,
    });
  });

  it('PVALIDATE validates once; a second PVALIDATE is FAIL_NOUPDATE (255); rescinding brings #VC back', async () => {
    const { vm, vcpu } = await setupVm({ type: 'snp', launch: 'finished' });
    const gpa = 2 * PAGE_SIZE;
    expect(await vcpu.pvalidate(gpa)).toEqual({ ok: true, code: PvalidateRet.SUCCESS });
    expect(vm.rmpQuery(gpa)).toMatchObject({ assigned: true, asid: vm.asid, gpa, validated: true });
    expect(await vcpu.pvalidate(gpa)).toEqual({ ok: true, code: 255 });
    expect(PvalidateRet.FAIL_NOUPDATE).toBe(255);
    expect(dataOf(await vcpu.read(gpa, 4))).toEqual(filled(4, 0));
    expect(await vcpu.pvalidate(gpa, false)).toEqual({ ok: true, code: 0 });
    expect(vm.rmpQuery(gpa)).toMatchObject({ assigned: true, validated: false });
    expect(await vcpu.read(gpa, 4)).toEqual({ ok: false, exit: 'vc' });
  });

  it('LAUNCH_UPDATE pages arrive validated: readable without PVALIDATE, and PVALIDATE is FAIL_NOUPDATE', async () => {
    const { sb, vm, vcpu } = await setupVm({ type: 'snp', launch: 'started' });
    await vm.snpLaunchUpdate({ gpa: 0, data: image(5) });
    await vm.snpLaunchFinish();
    expect(vm.rmpQuery(0)).toMatchObject({ assigned: true, asid: vm.asid, gpa: 0, validated: true, immutable: false });
    expect(dataOf(await vcpu.read(0, PAGE_SIZE))).toEqual([...image(5)]);
    expect(await vcpu.pvalidate(0)).toEqual({ ok: true, code: PvalidateRet.FAIL_NOUPDATE });
    expect(sb.stats().vcExceptions).toBe(0);
  });

  it('an access at a GPA other than the one the page is assigned at is an RMP violation', async () => {
    const { sb, vm, vcpu, gmem } = await setupVm({ type: 'snp', launch: 'finished', gmemSize: MiB });
    await faultAndValidate(vcpu, 0);
    // Re-bind offset 0 of the file at another gpa: the folio is up to date, so it is not prepared again.
    await vm.setUserMemoryRegion2({ slot: 0, guestPhysAddr: 0, memorySize: 0 });
    await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 4 * MiB, memorySize: MiB, guestMemfd: gmem });
    await vm.setMemoryAttributes({ address: 4 * MiB, size: MiB, attributes: 'private' });
    const d = await statsDelta(sb, ['rmpViolations'], async () => {
      expect(await vcpu.read(4 * MiB, 1)).toEqual({ ok: false, exit: 'rmp_violation' });
    });
    expect(d.rmpViolations).toBe(1);
    expect(vm.rmpQuery(4 * MiB)).toMatchObject({ assigned: true, asid: vm.asid, gpa: 0 });
  });

  it('freeing a folio by PUNCH_HOLE makes its pfn hypervisor-owned again (validated = 0) before reuse', async () => {
    const { sb, vm, vcpu, gmem } = await setupVm({ type: 'snp', launch: 'finished' });
    await faultAndValidate(vcpu, 0);
    await vcpu.write(0, image(8));
    const pfn = vm.rmpQuery(0).pfn!;
    await gmem.fallocate(['keep_size', 'punch_hole'], 0, PAGE_SIZE);
    expect(vm.rmpQuery(0)).toEqual({ present: false });
    expectFreedPfn(sb, pfn);
    // The allocator hands the same pfn out again: it arrives hypervisor-owned and is prepared afresh.
    await gmem.fallocate(['keep_size'], 0, PAGE_SIZE);
    expect(vm.rmpQuery(0)).toEqual({ present: true, pfn, ...HYPERVISOR_OWNED });
    await faultAndValidate(vcpu, 0);
    expect(dataOf(await vcpu.read(0, PAGE_SIZE))).toEqual(filled(PAGE_SIZE, 0));
    expectHostIsolation(sb);
  });

  it('freeing a folio by closing the last file makes its pfn hypervisor-owned again', async () => {
    const a = await setupVm({ type: 'snp', launch: 'started' });
    const b = await linkSecondVm(a, { gpa: MiB, slotSize: MiB });
    await a.vm.snpLaunchUpdate({ gpa: 0, data: image(1) });
    const pfn = a.vm.rmpQuery(0).pfn!;
    await a.gmem.close();
    // Still cached (B's file is open) and still A's in the RMP.
    expect(b.vm.rmpQuery(MiB)).toEqual({ present: true, pfn, assigned: true, asid: a.vm.asid, gpa: 0, validated: true, immutable: false });
    const d = await statsDelta(a.sb, ['foliosFreed', 'archInvalidateCalls'], () => b.gmem.close());
    expect(d).toEqual({ foliosFreed: 1, archInvalidateCalls: 1 });
    expectFreedPfn(a.sb, pfn);
    expectHostIsolation(a.sb);
  });

  it.each(POLICIES)('host isolation under %s: no host write to a guest page in a full life cycle', async (policy) => {
    const a = await setupVm({ policy, type: 'snp', launch: 'started' });
    const b = await linkSecondVm(a, { gpa: 2 * MiB, slotSize: MiB });
    await a.vm.snpLaunchUpdate({ gpa: 0, len: 2 * PAGE_SIZE, data: new Uint8Array(2 * PAGE_SIZE).fill(7) });
    await a.vm.snpLaunchFinish();
    await a.gmem.fallocate(['keep_size'], 4 * PAGE_SIZE, 4 * PAGE_SIZE);
    await a.vcpu.preFaultMemory({ gpa: 8 * PAGE_SIZE, size: 2 * PAGE_SIZE });
    for (const gpa of [4, 5, 8, 12].map((i) => i * PAGE_SIZE)) {
      await a.vcpu.read(gpa, 1);
      await a.vcpu.pvalidate(gpa);
      await a.vcpu.write(gpa, Uint8Array.of(1, 2, 3));
    }
    await b.vcpu.read(2 * MiB + 16 * PAGE_SIZE, 1);
    await a.vm.setMemoryAttributes({ address: 4 * PAGE_SIZE, size: PAGE_SIZE, attributes: 'shared' });
    await a.gmem.fallocate(['keep_size', 'punch_hole'], 0, 6 * PAGE_SIZE);
    await a.gmem.hwpoison(8 * PAGE_SIZE);
    await a.gmem.close();
    await b.gmem.close();
    expectHostIsolation(a.sb);
    // Balance: every pfn is free and hypervisor-owned again.
    expect(a.sb.freeHostPages()).toBe(a.sb.mem.limits.nrPfns);
    for (let pfn = 0; pfn < 32; pfn++) {
      expect(rmpOfPfn(a.sb, pfn)).toEqual(HYPERVISOR_OWNED);
      expect(a.sb.hostPage(pfn)[0]).toBe(HOST_PATTERN);
    }
  });
});
