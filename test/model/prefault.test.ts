// KVM_PRE_FAULT_MEMORY (virt/kvm/kvm_main.c kvm_vcpu_pre_fault_memory, arch/x86/kvm/mmu/mmu.c
// kvm_arch_vcpu_pre_fault_memory): argument checks, -EOPNOTSUPP on SNP before LAUNCH_FINISH
// (5932ca411e53), -ENOENT without a memslot and -EFAULT for a PRIVATE gfn without one
// (kvm_handle_noslot_fault), partial progress in the returned range, -EINTR on a pending signal,
// and a guest_memfd error returned only when nothing was mapped.

import { describe, expect, it } from 'vitest';
import { MiB, PAGE_SIZE, dataOf, expectHostIsolation, filled, setupVm, smallSandbox, statsDelta } from '../helpers/helpers.js';

describe('KVM_PRE_FAULT_MEMORY: argument checks', () => {
  it('flags != 0, an unaligned gpa or size, and size 0 are EINVAL', async () => {
    const { sb, vcpu } = await setupVm({ type: 'sw-protected' });
    const d = await statsDelta(sb, ['faults', 'preFaultedPages'], async () => {
      await expect(vcpu.preFaultMemory({ gpa: 0, size: PAGE_SIZE, flags: 1 })).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
      await expect(vcpu.preFaultMemory({ gpa: 8, size: PAGE_SIZE })).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(vcpu.preFaultMemory({ gpa: 0, size: PAGE_SIZE + 8 })).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(vcpu.preFaultMemory({ gpa: 0, size: 0 })).rejects.toMatchObject({ code: 'EINVAL' });
    });
    expect(d).toEqual({ faults: 0, preFaultedPages: 0 });
  });

  it('SNP before LAUNCH_FINISH is EOPNOTSUPP (before and after LAUNCH_START)', async () => {
    const { sb, vm, vcpu, gmem } = await setupVm({ type: 'snp' });
    await expect(vcpu.preFaultMemory({ gpa: 0, size: PAGE_SIZE })).rejects.toMatchObject({ code: 'EOPNOTSUPP', errno: 95 });
    await vm.snpLaunchStart();
    await expect(vcpu.preFaultMemory({ gpa: 0, size: PAGE_SIZE })).rejects.toMatchObject({ code: 'EOPNOTSUPP' });
    expect(gmem.folioAt(0)).toBeNull();
    expect(sb.stats().preFaultedPages).toBe(0);
    await vm.snpLaunchFinish();
    await expect(vcpu.preFaultMemory({ gpa: 0, size: PAGE_SIZE })).resolves.toEqual({ gpa: PAGE_SIZE, size: 0 });
  });
});

describe('KVM_PRE_FAULT_MEMORY: mapping', () => {
  it('SNP after LAUNCH_FINISH maps and prepares each page; the guest then needs only PVALIDATE', async () => {
    const { sb, vm, vcpu } = await setupVm({ type: 'snp', launch: 'finished', policy: 'prepare-on-fault-own-vm' });
    const d = await statsDelta(sb, ['preFaultedPages', 'sptesInstalled', 'archPrepareCalls'], async () => {
      expect(await vcpu.preFaultMemory({ gpa: 4 * PAGE_SIZE, size: 3 * PAGE_SIZE })).toEqual({ gpa: 7 * PAGE_SIZE, size: 0 });
    });
    expect(d).toEqual({ preFaultedPages: 3, sptesInstalled: 3, archPrepareCalls: 3 });
    for (const i of [4, 5, 6]) {
      expect(vm.rmpQuery(i * PAGE_SIZE)).toMatchObject({
        present: true,
        assigned: true,
        asid: vm.asid,
        gpa: i * PAGE_SIZE,
        validated: false,
      });
    }
    const d2 = await statsDelta(sb, ['faults'], async () => {
      expect(await vcpu.read(4 * PAGE_SIZE, 1)).toEqual({ ok: false, exit: 'vc' });
      expect(await vcpu.pvalidate(4 * PAGE_SIZE)).toEqual({ ok: true, code: 0 });
      expect(dataOf(await vcpu.read(4 * PAGE_SIZE, 8))).toEqual(filled(8, 0));
    });
    expect(d2.faults).toBe(0);
    expectHostIsolation(sb);
  });

  it('sw-protected VMs may pre-fault at once', async () => {
    const { vcpu, gmem } = await setupVm({ type: 'sw-protected' });
    expect(await vcpu.preFaultMemory({ gpa: 0, size: 2 * PAGE_SIZE })).toEqual({ gpa: 2 * PAGE_SIZE, size: 0 });
    expect(gmem.folioAt(0)).toMatchObject({ uptodate: true });
    expect(gmem.folioAt(PAGE_SIZE)).toMatchObject({ uptodate: true });
  });

  it('shared gfns are pre-faulted as shared accesses (default VM)', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'default' });
    await vm.setUserMemoryRegion2({ slot: 0, guestPhysAddr: 0, memorySize: MiB });
    const vcpu = await vm.createVcpu();
    const d = await statsDelta(sb, ['faultsShared', 'preFaultedPages', 'foliosAllocated'], () =>
      vcpu.preFaultMemory({ gpa: 0, size: 2 * PAGE_SIZE }),
    );
    expect(d).toEqual({ faultsShared: 2, preFaultedPages: 2, foliosAllocated: 0 });
  });

  it('a gfn with no memslot is ENOENT when nothing was mapped', async () => {
    const { sb, vcpu } = await setupVm({ type: 'sw-protected', gmemSize: MiB });
    await expect(vcpu.preFaultMemory({ gpa: 4 * MiB, size: PAGE_SIZE })).rejects.toMatchObject({ code: 'ENOENT', errno: 2 });
    expect(sb.stats().preFaultedPages).toBe(0);
  });

  it('a PRIVATE gfn with no memslot is EFAULT, not ENOENT (the fault exits instead of emulating)', async () => {
    const { vm, vcpu } = await setupVm({ type: 'sw-protected', gmemSize: MiB });
    await vm.setMemoryAttributes({ address: 4 * MiB, size: PAGE_SIZE, attributes: 'private' });
    await expect(vcpu.preFaultMemory({ gpa: 4 * MiB, size: PAGE_SIZE })).rejects.toMatchObject({ code: 'EFAULT', errno: 14 });
  });

  it('partial progress: a mapped slot then a hole succeeds with gpa advanced to the hole and size shrunk', async () => {
    const { sb, vcpu, gmem } = await setupVm({ type: 'snp', launch: 'finished', gmemSize: MiB });
    const start = MiB - 2 * PAGE_SIZE;
    const d = await statsDelta(sb, ['preFaultedPages'], async () => {
      expect(await vcpu.preFaultMemory({ gpa: start, size: 5 * PAGE_SIZE })).toEqual({ gpa: MiB, size: 3 * PAGE_SIZE });
    });
    expect(d.preFaultedPages).toBe(2);
    expect(gmem.folioAt(start)).not.toBeNull();
    expect(gmem.folioAt(MiB - PAGE_SIZE)).not.toBeNull();
    // Continuing from where it stopped now reports the hole.
    await expect(vcpu.preFaultMemory({ gpa: MiB, size: 3 * PAGE_SIZE })).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a pending signal is EINTR with nothing mapped; the signal is consumed', async () => {
    const { sb, vcpu, gmem } = await setupVm({ type: 'sw-protected' });
    sb.raiseSignal();
    await expect(vcpu.preFaultMemory({ gpa: 0, size: 4 * PAGE_SIZE })).rejects.toMatchObject({ code: 'EINTR', errno: 4 });
    expect(gmem.folioAt(0)).toBeNull();
    expect(sb.stats().preFaultedPages).toBe(0);
    await expect(vcpu.preFaultMemory({ gpa: 0, size: 4 * PAGE_SIZE })).resolves.toEqual({ gpa: 4 * PAGE_SIZE, size: 0 });
  });

  it('a guest_memfd error stops the walk: returned when nothing was mapped, else only the progress', async () => {
    const { vcpu, gmem } = await setupVm({ type: 'sw-protected' });
    await gmem.fallocate(['keep_size'], PAGE_SIZE, PAGE_SIZE);
    await gmem.hwpoison(PAGE_SIZE);
    await expect(vcpu.preFaultMemory({ gpa: PAGE_SIZE, size: 2 * PAGE_SIZE })).rejects.toMatchObject({ code: 'EHWPOISON', errno: 133 });
    expect(await vcpu.preFaultMemory({ gpa: 0, size: 3 * PAGE_SIZE })).toEqual({ gpa: PAGE_SIZE, size: 2 * PAGE_SIZE });
  });
});
