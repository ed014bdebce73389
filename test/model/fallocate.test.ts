// fallocate on a guest_memfd (fs/open.c vfs_fallocate, virt/kvm/guest_memfd.c kvm_gmem_fallocate):
// mode and alignment checks (-EOPNOTSUPP, -EINVAL); kvm_gmem_allocate: one folio per index, -EINTR
// on a pending signal keeping what was done, -ENOMEM; kvm_gmem_punch_hole: the SPTEs of every file of
// the inode zapped (kvm_gmem_invalidate_begin), the folios truncated and freed, each pfn
// hypervisor-owned again (sev_gmem_invalidate) and refilled.

import { describe, expect, it } from 'vitest';
import { HOST_PATTERN } from '../../src/index.js';
import {
  MiB,
  PAGE_SIZE,
  dataOf,
  expectFreedPfn,
  expectHostIsolation,
  faultAndValidate,
  filled,
  image,
  linkSecondVm,
  setupVm,
  statsDelta,
} from '../helpers/helpers.js';

const KEEP_SIZE = 0x01;
const PUNCH_HOLE = 0x02;
const ZERO_RANGE = 0x10;

describe('fallocate: argument checks', () => {
  it('a mode without KEEP_SIZE is EOPNOTSUPP', async () => {
    const { gmem } = await setupVm();
    await expect(gmem.fallocate([], 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EOPNOTSUPP', errno: 95 });
    await expect(gmem.fallocate(['punch_hole'], 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EOPNOTSUPP' });
    await expect(gmem.fallocate(0, 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EOPNOTSUPP' });
    expect(gmem.folioAt(0)).toBeNull();
  });

  it('bits other than KEEP_SIZE | PUNCH_HOLE are EOPNOTSUPP', async () => {
    const { gmem } = await setupVm();
    await expect(gmem.fallocate(KEEP_SIZE | ZERO_RANGE, 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EOPNOTSUPP' });
    await expect(gmem.fallocate(KEEP_SIZE | 0x40, 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EOPNOTSUPP' });
    // vfs_fallocate first: UNSHARE_RANGE only with allocate mode, so with PUNCH_HOLE it is EINVAL.
    await expect(gmem.fallocate(KEEP_SIZE | PUNCH_HOLE | 0x40, 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL' });
    expect(gmem.folioAt(0)).toBeNull();
  });

  it('an unaligned offset or len is EINVAL (allocate and punch hole)', async () => {
    const { gmem } = await setupVm();
    for (const mode of [['keep_size'], ['keep_size', 'punch_hole']] as const) {
      await expect(gmem.fallocate([...mode], 100, PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
      await expect(gmem.fallocate([...mode], 0, PAGE_SIZE + 1)).rejects.toMatchObject({ code: 'EINVAL' });
    }
  });

  it('allocate past the file size is EINVAL and allocates nothing', async () => {
    const { sb, gmem } = await setupVm({ gmemSize: MiB });
    const free = sb.freeHostPages();
    const d = await statsDelta(sb, ['foliosAllocated', 'fallocates'], async () => {
      await expect(gmem.fallocate(['keep_size'], MiB - PAGE_SIZE, 2 * PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(gmem.fallocate(['keep_size'], MiB, PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL' });
    });
    expect(d).toEqual({ foliosAllocated: 0, fallocates: 0 });
    expect(sb.freeHostPages()).toBe(free);
    expect(gmem.folioAt(MiB - PAGE_SIZE)).toBeNull();
  });
});

describe('fallocate: allocate', () => {
  it('grabs one folio per index, each held only by the filemap', async () => {
    const { sb, gmem } = await setupVm({ policy: 'prepare-on-fault' });
    const free = sb.freeHostPages();
    const d = await statsDelta(sb, ['foliosAllocated', 'fallocates'], () => gmem.fallocate(['keep_size'], 2 * PAGE_SIZE, 3 * PAGE_SIZE));
    expect(d).toEqual({ foliosAllocated: 3, fallocates: 1 });
    expect(sb.freeHostPages()).toBe(free - 3);
    expect(gmem.folioAt(PAGE_SIZE)).toBeNull();
    for (const i of [2, 3, 4]) expect(gmem.folioAt(i * PAGE_SIZE)).toMatchObject({ uptodate: false, hwpoison: false, refcount: 1 });
    expect(gmem.folioAt(5 * PAGE_SIZE)).toBeNull();
    // Allocating again finds the same folios.
    const pfn = gmem.folioAt(3 * PAGE_SIZE)!.pfn;
    const d2 = await statsDelta(sb, ['foliosAllocated'], () => gmem.fallocate(['keep_size'], 0, 6 * PAGE_SIZE));
    expect(d2.foliosAllocated).toBe(3);
    expect(gmem.folioAt(3 * PAGE_SIZE)!.pfn).toBe(pfn);
  });

  it('a pending signal stops it with EINTR before the first page; the signal is consumed', async () => {
    const { sb, gmem } = await setupVm();
    sb.raiseSignal();
    const d = await statsDelta(sb, ['foliosAllocated'], async () => {
      await expect(gmem.fallocate(['keep_size'], 0, 4 * PAGE_SIZE)).rejects.toMatchObject({ code: 'EINTR', errno: 4 });
    });
    expect(d.foliosAllocated).toBe(0);
    for (const i of [0, 1, 2, 3]) expect(gmem.folioAt(i * PAGE_SIZE)).toBeNull();
    await gmem.fallocate(['keep_size'], 0, 4 * PAGE_SIZE);
    for (const i of [0, 1, 2, 3]) expect(gmem.folioAt(i * PAGE_SIZE)).not.toBeNull();
  });

  it('EINTR keeps what was done before it', async () => {
    const { sb, gmem } = await setupVm();
    await gmem.fallocate(['keep_size'], 0, 2 * PAGE_SIZE);
    const kept = [gmem.folioAt(0)!.pfn, gmem.folioAt(PAGE_SIZE)!.pfn];
    sb.raiseSignal();
    await expect(gmem.fallocate(['keep_size'], 0, 4 * PAGE_SIZE)).rejects.toMatchObject({ code: 'EINTR' });
    expect([gmem.folioAt(0)?.pfn, gmem.folioAt(PAGE_SIZE)?.pfn]).toEqual(kept);
    expect(gmem.folioAt(2 * PAGE_SIZE)).toBeNull();
  });

  it('an empty allocator is ENOMEM', async () => {
    const { sb, gmem } = await setupVm();
    sb.reserveHostPages(sb.freeHostPages());
    await expect(gmem.fallocate(['keep_size'], 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'ENOMEM' });
    expect(gmem.folioAt(0)).toBeNull();
    sb.reserveHostPages(0);
    await gmem.fallocate(['keep_size'], 0, PAGE_SIZE);
    expect(gmem.folioAt(0)).not.toBeNull();
  });
});

describe('fallocate: PUNCH_HOLE', () => {
  it('zaps the SPTEs, removes and frees the folios: RMP hypervisor-owned, page refilled with HOST_PATTERN', async () => {
    const { sb, vm, gmem, vcpu } = await setupVm({ policy: 'prepare-on-fault', launch: 'finished' });
    const gpas = [0, PAGE_SIZE, 2 * PAGE_SIZE];
    for (const gpa of gpas) {
      await faultAndValidate(vcpu, gpa);
      await vcpu.write(gpa, image(gpa));
    }
    const pfns = gpas.map((gpa) => vm.rmpQuery(gpa).pfn!);
    const d = await statsDelta(sb, ['punchHoles', 'sptesZapped', 'foliosFreed', 'archInvalidateCalls', 'punchHoleLeftovers'], () =>
      gmem.fallocate(['keep_size', 'punch_hole'], 0, 2 * PAGE_SIZE),
    );
    expect(d).toEqual({ punchHoles: 1, sptesZapped: 2, foliosFreed: 2, archInvalidateCalls: 2, punchHoleLeftovers: 0 });
    expect(vm.rmpQuery(0)).toEqual({ present: false });
    expect(vm.rmpQuery(PAGE_SIZE)).toEqual({ present: false });
    expect(gmem.folioAt(0)).toBeNull();
    expectFreedPfn(sb, pfns[0]);
    expectFreedPfn(sb, pfns[1]);
    // Outside the hole nothing moved.
    expect(vm.rmpQuery(2 * PAGE_SIZE)).toMatchObject({ present: true, pfn: pfns[2], assigned: true, validated: true });
    expect(dataOf(await vcpu.read(2 * PAGE_SIZE, 16))).toEqual([...image(2 * PAGE_SIZE).subarray(0, 16)]);
    // The guest's next access faults a fresh page: zeros after PVALIDATE, never the old data or HOST_PATTERN.
    await faultAndValidate(vcpu, 0);
    const r = dataOf(await vcpu.read(0, PAGE_SIZE));
    expect(r).toEqual(filled(PAGE_SIZE, 0));
    expect(r).not.toContain(HOST_PATTERN);
    expectHostIsolation(sb);
  });

  it('zaps the SPTEs of every file of the inode (two VMs bound to one inode)', async () => {
    const a = await setupVm({ policy: 'prepare-on-fault-own-vm', type: 'snp', launch: 'finished' });
    const b = await linkSecondVm(a, { gpa: 0 });
    await faultAndValidate(a.vcpu, 0);
    // B shares the folio but it is A's page: B's access is an RMP violation, yet B has an SPTE for it.
    expect(await b.vcpu.read(0, 1)).toEqual({ ok: false, exit: 'rmp_violation' });
    const d = await statsDelta(a.sb, ['sptesZapped', 'foliosFreed'], () => b.gmem.fallocate(['keep_size', 'punch_hole'], 0, PAGE_SIZE));
    expect(d).toEqual({ sptesZapped: 2, foliosFreed: 1 });
    expect(a.vm.rmpQuery(0)).toEqual({ present: false });
    expect(b.vm.rmpQuery(0)).toEqual({ present: false });
    expectHostIsolation(a.sb);
  });

  it('a hole, and a range past the end, are fine (punch hole does not check the size)', async () => {
    const { sb, gmem } = await setupVm({ gmemSize: MiB });
    await gmem.fallocate(['keep_size'], MiB - PAGE_SIZE, PAGE_SIZE);
    const d = await statsDelta(sb, ['punchHoles', 'foliosFreed'], async () => {
      await gmem.fallocate(['keep_size', 'punch_hole'], 0, PAGE_SIZE);
      await gmem.fallocate(['keep_size', 'punch_hole'], MiB - PAGE_SIZE, 4 * PAGE_SIZE);
    });
    expect(d).toEqual({ punchHoles: 2, foliosFreed: 1 });
    expect(gmem.folioAt(MiB - PAGE_SIZE)).toBeNull();
    expect(gmem.fstat().size).toBe(MiB);
  });
});
