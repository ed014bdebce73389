// The x86 TDP fault path for guest accesses (arch/x86/kvm/mmu/mmu.c: kvm_mmu_page_fault,
// kvm_faultin_pfn, kvm_faultin_pfn_private; virt/kvm/guest_memfd.c kvm_gmem_get_pfn): a
// private/shared mismatch exits KVM_EXIT_MEMORY_FAULT (kvm_mmu_prepare_memory_fault_exit); no memslot
// is MMIO, or an EFAULT exit for a PRIVATE gfn (kvm_handle_noslot_fault); kvm_gmem_get_pfn's errors
// (EFAULT, EHWPOISON, ENOMEM, a failed sev_gmem_prepare); a folio cleared and prepared once.

import { describe, expect, it } from 'vitest';
import { HOST_PATTERN } from '../../src/index.js';
import {
  EXIT_FLAG_PRIVATE,
  MiB,
  PAGE_SIZE,
  dataOf,
  expectHostIsolation,
  faultAndValidate,
  filled,
  image,
  setupVm,
  statsDelta,
} from '../helpers/helpers.js';

describe('fault path: exits to the VMM', () => {
  it('a private access to a shared gpa exits memory_fault with flags PRIVATE and the gpa', async () => {
    const { sb, vm, vcpu } = await setupVm({ type: 'snp', launch: 'finished' });
    await vm.setMemoryAttributes({ address: 8 * PAGE_SIZE, size: PAGE_SIZE, attributes: 'shared' });
    const gpa = 8 * PAGE_SIZE + 0x10;
    const d = await statsDelta(sb, ['memoryFaultExits', 'foliosAllocated'], async () => {
      expect(await vcpu.read(gpa, 4, { private: true })).toEqual({
        ok: false,
        exit: 'memory_fault',
        errno: 'EFAULT',
        memoryFault: { reason: 'memory_fault', gpa: 8 * PAGE_SIZE, size: PAGE_SIZE, flags: EXIT_FLAG_PRIVATE },
      });
    });
    // The exit happens before guest_memfd is asked for a page.
    expect(d).toEqual({ memoryFaultExits: 1, foliosAllocated: 0 });
  });

  it('a shared access to a private gpa exits memory_fault with flags 0', async () => {
    const { vcpu } = await setupVm({ type: 'sw-protected' });
    expect(await vcpu.write(3 * PAGE_SIZE, Uint8Array.of(1), { private: false })).toEqual({
      ok: false,
      exit: 'memory_fault',
      errno: 'EFAULT',
      memoryFault: { reason: 'memory_fault', gpa: 3 * PAGE_SIZE, size: PAGE_SIZE, flags: 0 },
    });
  });

  it('a gfn with no memslot takes the MMIO path', async () => {
    const { vcpu } = await setupVm({ type: 'snp', launch: 'finished', gmemSize: MiB });
    expect(await vcpu.read(4 * MiB, 8)).toEqual({ ok: false, exit: 'mmio' });
    const sw = await setupVm({ type: 'sw-protected' });
    expect(await sw.vcpu.write(4 * MiB, Uint8Array.of(1))).toEqual({ ok: false, exit: 'mmio' });
  });

  it('a private access past the guest physical space (no memslot, no attribute: shared) exits memory_fault, a shared one MMIO', async () => {
    const { vcpu } = await setupVm({ type: 'snp', launch: 'finished', gmemSize: MiB });
    // kvm_faultin_pfn checks the attribute before the memslot: private != shared exits to the VMM.
    const far = 0x400_0000_0000;
    expect(await vcpu.read(far, 8, { private: true })).toEqual({
      ok: false,
      exit: 'memory_fault',
      errno: 'EFAULT',
      memoryFault: { reason: 'memory_fault', gpa: far, size: PAGE_SIZE, flags: EXIT_FLAG_PRIVATE },
    });
    expect(await vcpu.read(far, 8, { private: false })).toEqual({ ok: false, exit: 'mmio' });
  });

  it('a PRIVATE gfn with no memslot cannot be emulated: memory_fault with EFAULT (kvm_handle_noslot_fault)', async () => {
    const { sb, vm, vcpu } = await setupVm({ type: 'sw-protected', gmemSize: MiB });
    await vm.setMemoryAttributes({ address: 4 * MiB, size: PAGE_SIZE, attributes: 'private' });
    const d = await statsDelta(sb, ['memoryFaultExits', 'foliosAllocated'], async () => {
      expect(await vcpu.read(4 * MiB, 8)).toEqual({
        ok: false,
        exit: 'memory_fault',
        errno: 'EFAULT',
        memoryFault: { reason: 'memory_fault', gpa: 4 * MiB, size: PAGE_SIZE, flags: EXIT_FLAG_PRIVATE },
      });
    });
    expect(d).toEqual({ memoryFaultExits: 1, foliosAllocated: 0 });
  });

  it('a private access through a slot without guest_memfd exits memory_fault (EFAULT)', async () => {
    const { vm, vcpu } = await setupVm({ type: 'sw-protected' });
    await vm.setUserMemoryRegion2({ slot: 1, guestPhysAddr: 4 * MiB, memorySize: MiB, userspaceAddr: 0 });
    await vm.setMemoryAttributes({ address: 4 * MiB, size: PAGE_SIZE, attributes: 'private' });
    expect(await vcpu.read(4 * MiB, 1)).toMatchObject({
      ok: false,
      exit: 'memory_fault',
      errno: 'EFAULT',
      memoryFault: { gpa: 4 * MiB, flags: EXIT_FLAG_PRIVATE },
    });
  });

  it("the slot's file closed: kvm_gmem_get_pfn fails with EFAULT, reported as a memory fault", async () => {
    const { vcpu, gmem } = await setupVm({ type: 'sw-protected' });
    await gmem.close();
    expect(await vcpu.read(PAGE_SIZE, 1)).toEqual({
      ok: false,
      exit: 'memory_fault',
      errno: 'EFAULT',
      memoryFault: { reason: 'memory_fault', gpa: PAGE_SIZE, size: PAGE_SIZE, flags: EXIT_FLAG_PRIVATE },
    });
  });

  it('a hwpoisoned folio fails with EHWPOISON, reported as a memory fault', async () => {
    const { sb, gmem, vcpu } = await setupVm({ type: 'snp', launch: 'finished' });
    const gpa = 2 * PAGE_SIZE;
    await faultAndValidate(vcpu, gpa);
    // No folio at offset 0 yet: nothing to poison.
    await expect(gmem.hwpoison(0)).rejects.toMatchObject({ code: 'ENOENT' });
    const d = await statsDelta(sb, ['sptesZapped'], () => gmem.hwpoison(gpa));
    expect(d.sptesZapped).toBe(1);
    expect(gmem.folioAt(gpa)).toMatchObject({ hwpoison: true });
    const r = await vcpu.read(gpa, 1);
    expect(r).toEqual({
      ok: false,
      exit: 'memory_fault',
      errno: 'EHWPOISON',
      memoryFault: { reason: 'memory_fault', gpa, size: PAGE_SIZE, flags: EXIT_FLAG_PRIVATE },
    });
    expectHostIsolation(sb);
  });
});

describe('fault path: kvm_gmem_get_pfn errors', () => {
  it('no host page left: ENOMEM, reported as a memory fault; nothing cached', async () => {
    const { sb, gmem, vcpu } = await setupVm({ type: 'sw-protected' });
    sb.reserveHostPages(sb.freeHostPages());
    expect(await vcpu.read(0, 1)).toMatchObject({
      ok: false,
      exit: 'memory_fault',
      errno: 'ENOMEM',
      memoryFault: { gpa: 0, flags: EXIT_FLAG_PRIVATE },
    });
    expect(gmem.folioAt(0)).toBeNull();
    sb.reserveHostPages(0);
    expect(dataOf(await vcpu.read(0, 4))).toEqual(filled(4, 0));
  });

  // Up to 6.19 up to date means cleared and prepared, marked after the hook succeeds; from 7.0
  // (8622ef05709f) it means cleared, marked before the hook runs, so the retry does not clear.
  it.each([
    ['prepare-on-fault-own-vm', false],
    ['prepare-on-every-fault', true],
  ] as const)(
    'a failed arch prepare (injected RMPUPDATE failure), %s: EINVAL memory fault, folio up to date: %s, retry works',
    async (policy, uptodate) => {
      const { sb, vm, gmem, vcpu } = await setupVm({ type: 'snp', launch: 'finished', policy });
      sb.injectFirmwareFailures('RMPUPDATE');
      expect(await vcpu.read(0, 1)).toMatchObject({
        ok: false,
        exit: 'memory_fault',
        errno: 'EINVAL',
        memoryFault: { gpa: 0, flags: EXIT_FLAG_PRIVATE },
      });
      expect(gmem.folioAt(0)).toMatchObject({ uptodate, refcount: 1 });
      expect(vm.rmpQuery(0)).toMatchObject({ present: true, assigned: false });
      const d = await statsDelta(sb, ['clears', 'rmpUpdates'], () => faultAndValidate(vcpu, 0));
      expect(d).toEqual({ clears: uptodate ? 0 : 1, rmpUpdates: 1 });
      expect(dataOf(await vcpu.read(0, 4))).toEqual(filled(4, 0));
      expectHostIsolation(sb);
    },
  );
});

describe('fault path: kvm_gmem_get_pfn', () => {
  it('a first guest read of a private page returns zeros, never the HOST_PATTERN the page held', async () => {
    const { sb, gmem, vcpu } = await setupVm({ policy: 'prepare-on-fault', type: 'snp', launch: 'finished' });
    await gmem.fallocate(['keep_size'], 0, PAGE_SIZE);
    const pfn = gmem.folioAt(0)!.pfn;
    // Allocated but not yet cleared: the host's bytes are still there.
    expect(sb.hostPage(pfn).every((b) => b === HOST_PATTERN)).toBe(true);
    await faultAndValidate(vcpu, 0);
    expect(dataOf(await vcpu.read(0, PAGE_SIZE))).toEqual(filled(PAGE_SIZE, 0));
    expect(gmem.folioAt(0)).toMatchObject({ pfn, uptodate: true, refcount: 1 });
    expectHostIsolation(sb);
  });

  it('sw-protected: private pages read zeros at once and keep what the guest writes', async () => {
    const { sb, vcpu, gmem } = await setupVm({ type: 'sw-protected' });
    const d = await statsDelta(sb, ['faults', 'faultsPrivate', 'sptesInstalled', 'archPrepareCalls', 'prepares', 'clears'], async () => {
      expect(dataOf(await vcpu.read(0, 32))).toEqual(filled(32, 0));
    });
    // No arch prepare for a non-SNP VM; one clear and one prepared folio.
    expect(d).toEqual({ faults: 1, faultsPrivate: 1, sptesInstalled: 1, archPrepareCalls: 0, prepares: 1, clears: 1 });
    await vcpu.write(100, image(3, 64));
    expect(dataOf(await vcpu.read(100, 64))).toEqual([...image(3, 64)]);
    expect(gmem.folioAt(0)).toMatchObject({ uptodate: true, refcount: 1 });
  });

  it('a folio is cleared and prepared once: refaulting after a zap keeps the data (prepare-on-fault policies)', async () => {
    for (const policy of ['prepare-on-fault', 'prepare-on-fault-own-vm'] as const) {
      const { sb, vm, vcpu } = await setupVm({ policy, type: 'snp', launch: 'finished' });
      await faultAndValidate(vcpu, 0);
      await vcpu.write(0, Uint8Array.of(5, 6, 7));
      // A conversion round trip (private -> shared -> private) zaps the SPTE but keeps the folio.
      await vm.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: 'shared' });
      await vm.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: 'private' });
      const d = await statsDelta(sb, ['faults', 'prepares', 'clears', 'archPrepareCalls'], async () => {
        expect(dataOf(await vcpu.read(0, 3))).toEqual([5, 6, 7]);
      });
      expect(d, policy).toEqual({ faults: 1, prepares: 0, clears: 0, archPrepareCalls: 0 });
      expectHostIsolation(sb);
    }
  });

  it('a shared access in a guest_memfd slot maps VMM memory, not the guest_memfd page', async () => {
    const { sb, vm, vcpu, gmem } = await setupVm({ type: 'sw-protected' });
    await vcpu.write(0, Uint8Array.of(1, 2, 3));
    await vm.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: 'shared' });
    const d = await statsDelta(sb, ['faultsShared', 'foliosAllocated'], async () => {
      expect(dataOf(await vcpu.read(0, 3))).toEqual([0, 0, 0]);
    });
    expect(d).toEqual({ faultsShared: 1, foliosAllocated: 0 });
    expect(gmem.folioAt(0)).not.toBeNull();
  });
});
