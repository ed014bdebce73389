// KVM_SET_USER_MEMORY_REGION2 (virt/kvm/kvm_main.c: kvm_set_memory_region,
// check_memory_region_flags) and kvm_gmem_bind: KVM_MEM_GUEST_MEMFD only on a VM with private
// memory, -EINVAL for alignment, a move or resize of a guest_memfd slot and an unknown slot, -EEXIST
// for an overlap, delete zapping and unbinding (kvm_gmem_unbind), READONLY refused on SNP
// (66155de93bcf); kvm_gmem_bind's -EBADF, and -EINVAL for a foreign or non-gmem fd, a bad offset
// or an index already bound.

import { describe, expect, it } from 'vitest';
import type { GuestMemfd, Sandbox, Vm } from '../../src/index.js';
import { EXIT_FLAG_PRIVATE, MiB, PAGE_SIZE, dataOf, filled, setupVm, smallSandbox, statsDelta } from '../helpers/helpers.js';

async function snpVmWithGmem(size = MiB): Promise<{ sb: Sandbox; vm: Vm; gmem: GuestMemfd }> {
  const sb = await smallSandbox();
  const vm = await sb.createVm({ type: 'snp' });
  const gmem = await vm.createGuestMemfd({ size });
  return { sb, vm, gmem };
}

/** True when user slot `slot` does not exist (deleting it fails with EINVAL, so nothing is deleted). */
async function slotMissing(vm: Vm, slot: number): Promise<boolean> {
  try {
    await vm.setUserMemoryRegion2({ slot, guestPhysAddr: 0, memorySize: 0 });
    return false;
  } catch (e) {
    return (e as { code?: string }).code === 'EINVAL';
  }
}

describe('KVM_SET_USER_MEMORY_REGION2: memslot rules', () => {
  it('GUEST_MEMFD on a default VM is EINVAL; sw-protected and snp accept it', async () => {
    const sb = await smallSandbox();
    const def = await sb.createVm({ type: 'default' });
    const g = await def.createGuestMemfd({ size: MiB });
    await expect(
      def.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: g }),
    ).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
    expect(await slotMissing(def, 0)).toBe(true);
    for (const type of ['sw-protected', 'snp'] as const) {
      const vm = await sb.createVm({ type });
      const gm = await vm.createGuestMemfd({ size: MiB });
      await expect(
        vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: gm }),
      ).resolves.toBeUndefined();
    }
  });

  it('a plain (non-gmem) memslot works on a default VM: shared reads see VMM memory', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'default' });
    await vm.setUserMemoryRegion2({ slot: 0, guestPhysAddr: 0, memorySize: 64 * 1024, userspaceAddr: 0 });
    const vcpu = await vm.createVcpu();
    expect(dataOf(await vcpu.read(PAGE_SIZE, 8))).toEqual(filled(8, 0));
  });

  it('an unaligned gpa or size is EINVAL and creates no slot', async () => {
    const { vm, gmem } = await snpVmWithGmem();
    const base = { slot: 1, flags: ['guest_memfd'] as Array<'guest_memfd'>, guestMemfd: gmem };
    await expect(vm.setUserMemoryRegion2({ ...base, guestPhysAddr: 512, memorySize: MiB })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(vm.setUserMemoryRegion2({ ...base, guestPhysAddr: 0, memorySize: PAGE_SIZE + 1 })).rejects.toMatchObject({
      code: 'EINVAL',
    });
    await expect(vm.setUserMemoryRegion2({ slot: 2, guestPhysAddr: 100, memorySize: PAGE_SIZE })).rejects.toMatchObject({ code: 'EINVAL' });
    expect(await slotMissing(vm, 1)).toBe(true);
    expect(await slotMissing(vm, 2)).toBe(true);
    // The file is still unbound: the full range can be bound now.
    await vm.setUserMemoryRegion2({ ...base, guestPhysAddr: 0, memorySize: MiB });
  });

  it('a new slot overlapping another is EEXIST and is not created', async () => {
    const { vm, gmem } = await snpVmWithGmem(2 * MiB);
    await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: MiB, memorySize: MiB, guestMemfd: gmem });
    // Overlapping on the right, on the left, and fully inside; gmem and plain slots alike.
    await expect(
      vm.setUserMemoryRegion2({
        slot: 1,
        flags: ['guest_memfd'],
        guestPhysAddr: MiB + PAGE_SIZE,
        memorySize: MiB,
        guestMemfd: gmem,
        guestMemfdOffset: MiB,
      }),
    ).rejects.toMatchObject({ code: 'EEXIST', errno: 17 });
    await expect(vm.setUserMemoryRegion2({ slot: 1, guestPhysAddr: 0, memorySize: MiB + PAGE_SIZE })).rejects.toMatchObject({
      code: 'EEXIST',
    });
    await expect(vm.setUserMemoryRegion2({ slot: 1, guestPhysAddr: MiB + 8 * PAGE_SIZE, memorySize: PAGE_SIZE })).rejects.toMatchObject({
      code: 'EEXIST',
    });
    expect(await slotMissing(vm, 1)).toBe(true);
    // Adjacent is fine, and the refused gmem slot did not bind offset MiB of the file.
    await vm.setUserMemoryRegion2({
      slot: 1,
      flags: ['guest_memfd'],
      guestPhysAddr: 2 * MiB,
      memorySize: MiB,
      guestMemfd: gmem,
      guestMemfdOffset: MiB,
    });
  });

  it('a GUEST_MEMFD slot cannot be moved or resized (EINVAL); it stays where it was', async () => {
    const { sb, vm, gmem, vcpu } = await setupVm({ type: 'sw-protected', gmemSize: 2 * MiB, slotSize: MiB });
    expect(dataOf(await vcpu.read(0, 4))).toEqual(filled(4, 0));
    const move = { slot: 0, flags: ['guest_memfd'] as Array<'guest_memfd'>, guestMemfd: gmem };
    await expect(vm.setUserMemoryRegion2({ ...move, guestPhysAddr: 4 * MiB, memorySize: MiB })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(vm.setUserMemoryRegion2({ ...move, guestPhysAddr: 0, memorySize: 2 * MiB })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(vm.setUserMemoryRegion2({ ...move, guestPhysAddr: 0, memorySize: MiB })).rejects.toMatchObject({ code: 'EINVAL' });
    // Nothing changed: the mapping survives (no new fault), and the slot still covers only [0, 1MiB).
    const d = await statsDelta(sb, ['faults', 'sptesZapped'], async () => {
      expect(dataOf(await vcpu.read(0, 4))).toEqual(filled(4, 0));
    });
    expect(d).toEqual({ faults: 0, sptesZapped: 0 });
    expect(await vcpu.read(4 * MiB, 4)).toEqual({ ok: false, exit: 'mmio' });
  });

  it('size 0 deletes the slot: its SPTEs are zapped, the file range unbound, the gpa MMIO', async () => {
    const { sb, vm, gmem, vcpu } = await setupVm({ type: 'sw-protected' });
    expect(dataOf(await vcpu.read(2 * PAGE_SIZE, 4))).toEqual(filled(4, 0));
    const d = await statsDelta(sb, ['sptesZapped'], () => vm.setUserMemoryRegion2({ slot: 0, guestPhysAddr: 0, memorySize: 0 }));
    expect(d.sptesZapped).toBe(1);
    // The gfn is still PRIVATE: a shared access mismatches, a private one cannot be emulated; once shared, MMIO.
    expect(await vcpu.read(2 * PAGE_SIZE, 4, { private: false })).toMatchObject({
      ok: false,
      exit: 'memory_fault',
      memoryFault: { flags: 0 },
    });
    expect(await vcpu.read(2 * PAGE_SIZE, 4)).toMatchObject({
      ok: false,
      exit: 'memory_fault',
      errno: 'EFAULT',
      memoryFault: { gpa: 2 * PAGE_SIZE, flags: EXIT_FLAG_PRIVATE },
    });
    await vm.setMemoryAttributes({ address: 0, size: MiB, attributes: 'shared' });
    expect(await vcpu.read(2 * PAGE_SIZE, 4)).toEqual({ ok: false, exit: 'mmio' });
    await vm.setMemoryAttributes({ address: 0, size: MiB, attributes: 'private' });
    // The binding is gone: the same offsets can be bound again (even by another slot id).
    await vm.setUserMemoryRegion2({ slot: 5, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: gmem });
    expect(dataOf(await vcpu.read(2 * PAGE_SIZE, 4))).toEqual(filled(4, 0));
  });

  it('deleting a slot that does not exist is EINVAL', async () => {
    const { vm } = await snpVmWithGmem();
    await expect(vm.setUserMemoryRegion2({ slot: 7, guestPhysAddr: 0, memorySize: 0 })).rejects.toMatchObject({
      code: 'EINVAL',
      errno: 22,
    });
  });

  it('READONLY together with GUEST_MEMFD is EINVAL; READONLY alone is EINVAL on SNP (66155de93bcf), fine on sw-protected', async () => {
    const { sb, vm, gmem } = await snpVmWithGmem();
    await expect(
      vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd', 'readonly'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: gmem }),
    ).rejects.toMatchObject({ code: 'EINVAL' });
    expect(await slotMissing(vm, 0)).toBe(true);
    await expect(vm.setUserMemoryRegion2({ slot: 0, flags: ['readonly'], guestPhysAddr: 4 * MiB, memorySize: MiB })).rejects.toMatchObject({
      code: 'EINVAL',
      errno: 22,
    });
    expect(await slotMissing(vm, 0)).toBe(true);
    const sw = await sb.createVm({ type: 'sw-protected' });
    await sw.setUserMemoryRegion2({ slot: 0, flags: ['readonly'], guestPhysAddr: 4 * MiB, memorySize: MiB });
  });
});

describe('KVM_SET_USER_MEMORY_REGION2: kvm_gmem_bind', () => {
  it('a closed or unknown fd is EBADF', async () => {
    const { vm, gmem } = await snpVmWithGmem();
    await expect(
      vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: 9999 }),
    ).rejects.toMatchObject({ code: 'EBADF', errno: 9 });
    await gmem.close();
    await expect(
      vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: gmem }),
    ).rejects.toMatchObject({ code: 'EBADF' });
    expect(await slotMissing(vm, 0)).toBe(true);
  });

  it('an fd that is not a guest_memfd (the VM fd) is EINVAL', async () => {
    const { vm } = await snpVmWithGmem();
    await expect(
      vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: vm.fd }),
    ).rejects.toMatchObject({ code: 'EINVAL' });
    expect(await slotMissing(vm, 0)).toBe(true);
  });

  it("another VM's guest_memfd is EINVAL", async () => {
    const { sb, gmem } = await snpVmWithGmem();
    const other = await sb.createVm({ type: 'snp' });
    await expect(
      other.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: gmem }),
    ).rejects.toMatchObject({ code: 'EINVAL' });
    expect(await slotMissing(other, 0)).toBe(true);
  });

  it('an unaligned offset, or offset + size past the file size, is EINVAL', async () => {
    const { vm, gmem, sb } = await snpVmWithGmem(MiB);
    const base = { slot: 0, flags: ['guest_memfd'] as Array<'guest_memfd'>, guestPhysAddr: 0, guestMemfd: gmem };
    await expect(vm.setUserMemoryRegion2({ ...base, memorySize: PAGE_SIZE, guestMemfdOffset: 100 })).rejects.toMatchObject({
      code: 'EINVAL',
    });
    await expect(vm.setUserMemoryRegion2({ ...base, memorySize: PAGE_SIZE, guestMemfdOffset: -PAGE_SIZE })).rejects.toMatchObject({
      code: 'EINVAL',
    });
    await expect(vm.setUserMemoryRegion2({ ...base, memorySize: MiB + PAGE_SIZE })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(vm.setUserMemoryRegion2({ ...base, memorySize: 2 * PAGE_SIZE, guestMemfdOffset: MiB - PAGE_SIZE })).rejects.toMatchObject({
      code: 'EINVAL',
    });
    expect(await slotMissing(vm, 0)).toBe(true);
    // The refused slot is not there: an access at its gpa is MMIO, and no folio was allocated.
    // (The launch first: an SNP vCPU cannot enter the guest before LAUNCH_FINISH.)
    await vm.snpLaunchStart();
    await vm.snpLaunchFinish();
    const vcpu = await vm.createVcpu();
    expect(await vcpu.read(0, 4)).toEqual({ ok: false, exit: 'mmio' });
    expect(sb.stats().foliosAllocated).toBe(0);
    // Exactly at the end is fine.
    await vm.setUserMemoryRegion2({ ...base, memorySize: PAGE_SIZE, guestMemfdOffset: MiB - PAGE_SIZE });
  });

  it('an index already bound in this file is EINVAL; disjoint offsets bind fine', async () => {
    const { vm, gmem } = await snpVmWithGmem(MiB);
    await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB / 2, guestMemfd: gmem });
    await expect(
      vm.setUserMemoryRegion2({
        slot: 1,
        flags: ['guest_memfd'],
        guestPhysAddr: 4 * MiB,
        memorySize: MiB / 2,
        guestMemfd: gmem,
        guestMemfdOffset: MiB / 2 - PAGE_SIZE,
      }),
    ).rejects.toMatchObject({ code: 'EINVAL' });
    expect(await slotMissing(vm, 1)).toBe(true);
    await vm.setUserMemoryRegion2({
      slot: 1,
      flags: ['guest_memfd'],
      guestPhysAddr: 4 * MiB,
      memorySize: MiB / 2,
      guestMemfd: gmem,
      guestMemfdOffset: MiB / 2,
    });
  });
});
