// KVM_CREATE_GUEST_MEMFD and its file (virt/kvm/guest_memfd.c): kvm_gmem_create's flag and size
// checks (-EINVAL), __kvm_gmem_create's new inode per file, no read or write (kvm_gmem_fops), fstat's
// size, -EBADF after close; and kvm_gmem_release: the file's SPTEs zapped, and the folios freed with
// the inode's last file (kvm_gmem_free_folio -> sev_gmem_invalidate: the pfn hypervisor-owned again).

import { describe, expect, it } from 'vitest';
import { HOST_PATTERN, KvmError } from '../../src/index.js';
import {
  EXIT_FLAG_PRIVATE,
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
  thrown,
} from '../helpers/helpers.js';

describe('KVM_CREATE_GUEST_MEMFD', () => {
  it('rejects any flag with EINVAL (no flags are supported)', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'snp' });
    await expect(vm.createGuestMemfd({ size: MiB, flags: 1 })).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
    await expect(vm.createGuestMemfd({ size: MiB, flags: 1 << 31 })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(vm.createGuestMemfd({ size: MiB, flags: 1 })).rejects.toBeInstanceOf(KvmError);
  });

  it('rejects size <= 0 and an unaligned size with EINVAL', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'snp' });
    for (const size of [0, -PAGE_SIZE, 1, PAGE_SIZE + 1, PAGE_SIZE - 1, MiB + 512]) {
      await expect(vm.createGuestMemfd({ size }), `size ${size}`).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
    }
  });

  it('returns a new file on a new inode whose fstat reports the size', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'snp' });
    const a = await vm.createGuestMemfd({ size: '2MiB' });
    const b = await vm.createGuestMemfd({ size: PAGE_SIZE });
    expect(a.fstat()).toEqual({ size: 2 * MiB });
    expect(b.fstat()).toEqual({ size: PAGE_SIZE });
    expect(a.fd).not.toBe(b.fd);
    // Separate inodes: allocating in one leaves the other a hole.
    await a.fallocate(['keep_size'], 0, PAGE_SIZE);
    expect(a.folioAt(0)).not.toBeNull();
    expect(b.folioAt(0)).toBeNull();
    // fallocate keeps the size.
    expect(a.fstat()).toEqual({ size: 2 * MiB });
  });

  it('has no read or write: both fail with EINVAL', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'snp' });
    const gmem = await vm.createGuestMemfd({ size: MiB });
    expect(thrown(() => gmem.read())).toMatchObject({ code: 'EINVAL', errno: 22 });
    expect(thrown(() => gmem.write())).toMatchObject({ code: 'EINVAL' });
  });

  it('a closed file gives EBADF for read, write, fstat, fallocate and a second close', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'snp' });
    const gmem = await vm.createGuestMemfd({ size: MiB });
    await gmem.close();
    expect(thrown(() => gmem.read())).toMatchObject({ code: 'EBADF', errno: 9 });
    expect(thrown(() => gmem.write())).toMatchObject({ code: 'EBADF' });
    expect(thrown(() => gmem.fstat())).toMatchObject({ code: 'EBADF' });
    await expect(gmem.fallocate(['keep_size'], 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EBADF' });
    await expect(gmem.close()).rejects.toMatchObject({ code: 'EBADF' });
  });
});

describe('close (kvm_gmem_release)', () => {
  it('zaps the SPTEs the file maps: a later read exits memory_fault with EFAULT', async () => {
    const { sb, vm, gmem, vcpu } = await setupVm({ policy: 'prepare-on-fault', launch: 'finished' });
    const gpa = 5 * PAGE_SIZE;
    await faultAndValidate(vcpu, gpa);
    expect(dataOf(await vcpu.write(gpa, image(1, 64)))).toEqual([]);
    const pfn = vm.rmpQuery(gpa).pfn!;
    const d = await statsDelta(sb, ['sptesZapped', 'foliosFreed', 'archInvalidateCalls'], () => gmem.close());
    // The one mapped SPTE is zapped; the inode's last file is gone, so its folio is freed.
    expect(d).toEqual({ sptesZapped: 1, foliosFreed: 1, archInvalidateCalls: 1 });
    expect(vm.rmpQuery(gpa)).toEqual({ present: false });
    expectFreedPfn(sb, pfn);
    const r = await vcpu.read(gpa, 16);
    expect(r).toEqual({
      ok: false,
      exit: 'memory_fault',
      errno: 'EFAULT',
      memoryFault: { reason: 'memory_fault', gpa, size: PAGE_SIZE, flags: EXIT_FLAG_PRIVATE },
    });
    expectHostIsolation(sb);
  });

  it('with a linked second file the folios live until the last file is closed', async () => {
    const a = await setupVm({ policy: 'prepare-on-fault-own-vm', launch: 'finished' });
    const b = await linkSecondVm(a);
    const gpa = 3 * PAGE_SIZE;
    await faultAndValidate(a.vcpu, gpa);
    await a.vcpu.write(gpa, image(7));
    const q = a.vm.rmpQuery(gpa);
    expect(q).toMatchObject({ present: true, assigned: true, asid: a.vm.asid, gpa, validated: true });

    const d1 = await statsDelta(a.sb, ['sptesZapped', 'foliosFreed'], () => a.gmem.close());
    expect(d1).toEqual({ sptesZapped: 1, foliosFreed: 0 });
    // Still cached in the inode, seen through B's file; the RMP entry is untouched by release.
    expect(b.vm.rmpQuery(gpa)).toEqual(q);
    expect(b.gmem.folioAt(gpa)).toMatchObject({ pfn: q.pfn, uptodate: true, refcount: 1 });
    // A's memslot lost its file: A's access is a memory fault with EFAULT.
    expect(await a.vcpu.read(gpa, 4)).toMatchObject({ ok: false, exit: 'memory_fault', errno: 'EFAULT' });

    const d2 = await statsDelta(a.sb, ['foliosFreed'], () => b.gmem.close());
    expect(d2.foliosFreed).toBe(1);
    expect(b.vm.rmpQuery(gpa)).toEqual({ present: false });
    expectFreedPfn(a.sb, q.pfn!);
    expectHostIsolation(a.sb);
  });

  it('the memslot outlives the file and can still be deleted; the gpa is then MMIO', async () => {
    const { vm, gmem, vcpu } = await setupVm({ type: 'sw-protected' });
    expect(dataOf(await vcpu.read(0, 8))).toEqual(filled(8, 0));
    await gmem.close();
    await vm.setUserMemoryRegion2({ slot: 0, guestPhysAddr: 0, memorySize: 0 });
    await vm.setMemoryAttributes({ address: 0, size: MiB, attributes: 'shared' });
    expect(await vcpu.read(0, 8)).toEqual({ ok: false, exit: 'mmio' });
  });

  it('frees every folio of a closed inode, making each pfn hypervisor-owned', async () => {
    const { sb, gmem } = await setupVm({ policy: 'prepare-on-allocate' });
    await gmem.fallocate(['keep_size'], 0, 4 * PAGE_SIZE);
    const pfns = [0, 1, 2, 3].map((i) => gmem.folioAt(i * PAGE_SIZE)!.pfn);
    for (const pfn of pfns) expect(rmpOfPfn(sb, pfn).assigned).toBe(true);
    await gmem.close();
    for (const pfn of pfns) expectFreedPfn(sb, pfn);
    expect(rmpOfPfn(sb, pfns[0])).toEqual(HYPERVISOR_OWNED);
    expect(sb.hostPage(pfns[0])[0]).toBe(HOST_PATTERN);
    expectHostIsolation(sb);
  });
});
