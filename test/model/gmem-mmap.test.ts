// guest_memfd host mappings as 6.18 has them, and the same calls on the versions before:
// kvm_gmem_get_supported_flags (44c6cb9fe988) and KVM_CAP_GUEST_MEMFD_FLAGS (d2042d8f96dd),
// kvm_gmem_create, kvm_gmem_mmap (3d3a04fad25a), kvm_gmem_fault_user_mapping (fe2bf6234e94),
// truncate_inode_pages_range's unmap_mapping_folio on PUNCH_HOLE, munmap's folio references,
// GMEM_ONLY memslots (576d035e2aef) whose shared faults take kvm_gmem_get_pfn (f029f04ddbec),
// KVM_MEM_GUEST_MEMFD on a default VM (d1e54dd08f16), and read/pread on the file.

import { describe, expect, it } from 'vitest';
import {
  HOST_PATTERN,
  HostSignalError,
  KERNEL_VERSIONS,
  type KernelVersionName,
  KvmError,
  PAGE_SIZE,
  Sandbox,
  type VmTypeName,
} from '../../src/index.js';
import { auditQuiescent } from '../../src/checker/audit.js';
import { KVM_MEMSLOT_GMEM_ONLY } from '../../src/kvm/memslots.js';
import { LockClass } from '../../src/shm/sync/classes.js';
import { lockdepDependencies } from '../../src/shm/sync/lockdep.js';
import { dataOf, thrown } from '../helpers/helpers.js';

const MMAP = 1;
const INIT_SHARED = 2;
const BEFORE = ['6.10', 'b85524314a', '6.11'] as const;
const FROM_618 = ['6.18', '6.19', '7.0', '7.4'] as const;

function sandbox(kernel: KernelVersionName): Promise<Sandbox> {
  return Sandbox.create({ kernel, memory: '4MiB', gpaSpace: '32MiB', userMemory: '8MiB', gmemSpace: '32MiB' });
}

/** A default VM of `kernel` with an MMAP (| INIT_SHARED) guest_memfd of `pages` pages. */
async function sharedFile(kernel: KernelVersionName = '6.18', pages = 4, flags = MMAP | INIT_SHARED) {
  const sb = await sandbox(kernel);
  const vm = await sb.createVm({ type: 'default' });
  const gmem = await vm.createGuestMemfd({ size: pages * PAGE_SIZE, flags });
  return { sb, vm, gmem };
}

function signalOf(fn: () => unknown): { signal: string; offset: number } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(HostSignalError);
    const s = e as HostSignalError;
    return { signal: s.signal, offset: s.offset };
  }
  throw new Error('expected a signal');
}

describe('the versions split at 6.18', () => {
  it('lists every modelled version in one of the two groups', () => {
    expect([...BEFORE, ...FROM_618].sort()).toEqual([...KERNEL_VERSIONS].sort());
  });

  it.each(BEFORE)(
    '%s: no guest_memfd flag, no KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_GUEST_MEMFD only with private memory, no mmap',
    async (kernel) => {
      const sb = await sandbox(kernel);
      expect(sb.checkExtension('guest_memfd_flags')).toBe(0);
      expect(sb.checkExtension('guest_memfd')).toBe(1);
      const answers: Record<VmTypeName, number> = { default: 0, 'sw-protected': 1, snp: 1 };
      for (const type of ['default', 'sw-protected', 'snp'] as const) {
        const vm = await sb.createVm({ type });
        expect(vm.checkExtension('guest_memfd_flags'), type).toBe(0);
        expect(vm.checkExtension('guest_memfd'), type).toBe(answers[type]);
        for (const flags of [MMAP, INIT_SHARED, MMAP | INIT_SHARED])
          expect(thrown(() => vm.createGuestMemfdSync({ size: PAGE_SIZE, flags })).code, `${type} ${flags}`).toBe('EINVAL');
        const g = vm.createGuestMemfdSync({ size: PAGE_SIZE });
        // kvm_gmem_fops had no .mmap: do_mmap's ENODEV, MAP_PRIVATE too.
        expect(thrown(() => g.mmapSync({ size: PAGE_SIZE })).code).toBe('ENODEV');
        expect(thrown(() => g.mmapSync({ size: PAGE_SIZE, shared: false })).code).toBe('ENODEV');
        await g.close();
      }
      // A default VM cannot bind guest_memfd (check_memory_region_flags: kvm_arch_has_private_mem).
      const vm = await sb.createVm({ type: 'default' });
      const g = await vm.createGuestMemfd({ size: PAGE_SIZE });
      await expect(
        vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: PAGE_SIZE, guestMemfd: g }),
      ).rejects.toMatchObject({ code: 'EINVAL' });
    },
  );

  it.each(FROM_618)('%s: MMAP on every VM, INIT_SHARED without private memory; the system fd answers both', async (kernel) => {
    const sb = await sandbox(kernel);
    expect(sb.checkExtension('guest_memfd_flags')).toBe(MMAP | INIT_SHARED);
    expect(sb.checkExtension('guest_memfd')).toBe(1);
    const caps: Record<VmTypeName, number> = { default: MMAP | INIT_SHARED, 'sw-protected': MMAP, snp: MMAP };
    for (const type of ['default', 'sw-protected', 'snp'] as const) {
      const vm = await sb.createVm({ type });
      expect(vm.checkExtension('guest_memfd'), type).toBe(1);
      expect(vm.checkExtension('guest_memfd_flags'), type).toBe(caps[type]);
      await (await vm.createGuestMemfd({ size: PAGE_SIZE, flags: MMAP })).close();
      if (type === 'default') {
        await (await vm.createGuestMemfd({ size: PAGE_SIZE, flags: ['init_shared'] })).close();
        await (await vm.createGuestMemfd({ size: PAGE_SIZE, flags: ['mmap', 'init_shared'] })).close();
      } else {
        expect(thrown(() => vm.createGuestMemfdSync({ size: PAGE_SIZE, flags: INIT_SHARED })).code, type).toBe('EINVAL');
        expect(thrown(() => vm.createGuestMemfdSync({ size: PAGE_SIZE, flags: MMAP | INIT_SHARED })).code, type).toBe('EINVAL');
      }
      // Flags first, then the size: both EINVAL.
      expect(thrown(() => vm.createGuestMemfdSync({ size: 1, flags: MMAP })).code).toBe('EINVAL');
      expect(thrown(() => vm.createGuestMemfdSync({ size: PAGE_SIZE, flags: 4 })).code).toBe('EINVAL');
    }
  });
});

describe('mmap of a guest_memfd (kvm_gmem_mmap and the checks of mmap(2) before it)', () => {
  it('INIT_SHARED without MMAP is a file mmap refuses with ENODEV, even MAP_PRIVATE (ENODEV comes first)', async () => {
    const { gmem } = await sharedFile('6.18', 4, INIT_SHARED);
    expect(thrown(() => gmem.mmapSync({ size: PAGE_SIZE })).code).toBe('ENODEV');
    expect(thrown(() => gmem.mmapSync({ size: PAGE_SIZE, shared: false })).code).toBe('ENODEV');
    const { gmem: none } = await sharedFile('6.18', 4, 0);
    expect(thrown(() => none.mmapSync({ size: PAGE_SIZE, shared: false })).code).toBe('ENODEV');
  });

  it('MAP_PRIVATE of an MMAP file is EINVAL; a zero length or an offset inside a page is EINVAL, the offset before the fd', async () => {
    const { gmem } = await sharedFile();
    expect(thrown(() => gmem.mmapSync({ size: PAGE_SIZE, shared: false })).code).toBe('EINVAL');
    expect(thrown(() => gmem.mmapSync({ size: 0 })).code).toBe('EINVAL');
    expect(thrown(() => gmem.mmapSync({ size: PAGE_SIZE, offset: 1 })).code).toBe('EINVAL');
    await gmem.close();
    expect(thrown(() => gmem.mmapSync({ size: PAGE_SIZE, offset: 1 })).code).toBe('EINVAL');
    expect(thrown(() => gmem.mmapSync({ size: PAGE_SIZE })).code).toBe('EBADF');
  });

  it('an offset into the file maps from there; a length not page aligned is rounded up; SIGSEGV past the mapping', async () => {
    const { gmem } = await sharedFile();
    const whole = gmem.mmapSync({ size: 4 * PAGE_SIZE });
    whole.writeSync(2 * PAGE_SIZE, new Uint8Array([7, 8, 9]));
    const tail = gmem.mmapSync({ size: 100, offset: 2 * PAGE_SIZE });
    expect(tail.size).toBe(PAGE_SIZE);
    expect([...tail.readSync(0, 3)]).toEqual([7, 8, 9]);
    expect(signalOf(() => tail.readSync(PAGE_SIZE - 1, 2))).toEqual({ signal: 'SIGSEGV', offset: PAGE_SIZE });
  });

  it('read and write are EINVAL; pread and pwrite ESPIPE, a negative position EINVAL', async () => {
    const { gmem } = await sharedFile();
    expect(thrown(() => gmem.read()).code).toBe('EINVAL');
    expect(thrown(() => gmem.write()).code).toBe('EINVAL');
    expect(thrown(() => gmem.pread(0)).code).toBe('ESPIPE');
    expect(thrown(() => gmem.pwrite(0)).code).toBe('ESPIPE');
    expect(thrown(() => gmem.pread(-1)).code).toBe('EINVAL');
    await gmem.close();
    expect(thrown(() => gmem.pread(0)).code).toBe('EBADF');
  });
});

describe('kvm_gmem_fault_user_mapping and the host page tables', () => {
  it('a fault clears a folio that is not up to date once and marks it; PTEs hold folio references until munmap', async () => {
    const { sb, gmem } = await sharedFile();
    // fallocate grabs without clearing (6.18): the page still holds the free pattern.
    await gmem.fallocate(['keep_size'], 0, PAGE_SIZE);
    const f = gmem.folioAt(0)!;
    expect(f).toMatchObject({ uptodate: false, refcount: 1 });
    expect(sb.hostPage(f.pfn)[0]).toBe(HOST_PATTERN);
    const clears = sb.stats().clears;
    const a = gmem.mmapSync({ size: PAGE_SIZE });
    const b = gmem.mmapSync({ size: PAGE_SIZE });
    expect([...a.readSync(0, 4)]).toEqual([0, 0, 0, 0]);
    expect(gmem.folioAt(0)).toEqual({ pfn: f.pfn, uptodate: true, hwpoison: false, refcount: 2, pincount: 0 });
    a.writeSync(0, new Uint8Array([0x5a]));
    // The second mapping's fault finds it up to date: no second clear.
    expect([...b.readSync(0, 2)]).toEqual([0x5a, 0]);
    expect(sb.stats().clears - clears).toBe(1);
    expect(gmem.folioAt(0)!.refcount).toBe(3);
    await a.munmap();
    expect(gmem.folioAt(0)!.refcount).toBe(2);
    await a.munmap(); // an unmapped range: nothing to do
    expect(gmem.folioAt(0)!.refcount).toBe(2);
    expect(signalOf(() => a.readSync(0, 1)).signal).toBe('SIGSEGV');
    await b.munmap();
    expect(gmem.folioAt(0)!.refcount).toBe(1);
  });

  it('SIGBUS at and past the file size (the bytes before stay written) and on a file without INIT_SHARED', async () => {
    const { gmem } = await sharedFile('6.18', 2);
    const m = gmem.mmapSync({ size: 8 * PAGE_SIZE });
    expect(signalOf(() => m.writeSync(0, new Uint8Array(8 * PAGE_SIZE).fill(0xaa)))).toEqual({ signal: 'SIGBUS', offset: 2 * PAGE_SIZE });
    expect(signalOf(() => m.readSync(5 * PAGE_SIZE, 1))).toEqual({ signal: 'SIGBUS', offset: 5 * PAGE_SIZE });
    expect([...m.readSync(2 * PAGE_SIZE - 2, 2)]).toEqual([0xaa, 0xaa]);
    const { gmem: priv } = await sharedFile('6.18', 2, MMAP);
    const p = priv.mmapSync({ size: 2 * PAGE_SIZE });
    expect(signalOf(() => p.readSync(0, 1))).toEqual({ signal: 'SIGBUS', offset: 0 });
    // No folio was made for it.
    expect(priv.folioAt(0)).toBeNull();
  });

  it('PUNCH_HOLE unmaps the host PTEs before the folio is freed; the next access faults a new, zeroed folio', async () => {
    const { sb, gmem } = await sharedFile();
    const m = gmem.mmapSync({ size: 4 * PAGE_SIZE });
    m.writeSync(0, new Uint8Array(2 * PAGE_SIZE).fill(0xcc));
    const free = sb.freeHostPages();
    const old = gmem.folioAt(0)!;
    expect(old.refcount).toBe(2);
    await gmem.fallocate(['keep_size', 'punch_hole'], 0, PAGE_SIZE);
    // Both references went (the cache's and the PTE's): the page is back, painted.
    expect(gmem.folioAt(0)).toBeNull();
    expect(sb.freeHostPages()).toBe(free + 1);
    expect(sb.hostPage(old.pfn)[0]).toBe(HOST_PATTERN);
    expect([...m.readSync(PAGE_SIZE - 1, 2)]).toEqual([0, 0xcc]);
    expect(gmem.folioAt(0)).toMatchObject({ uptodate: true, refcount: 2 });
  });

  it('memory failure unmaps the host PTE; the next access is SIGBUS (VM_FAULT_HWPOISON)', async () => {
    const { gmem } = await sharedFile();
    const m = gmem.mmapSync({ size: PAGE_SIZE });
    m.writeSync(0, new Uint8Array([1]));
    await gmem.hwpoison(0);
    expect(gmem.folioAt(0)).toMatchObject({ hwpoison: true, refcount: 1 });
    expect(signalOf(() => m.readSync(0, 1)).signal).toBe('SIGBUS');
  });

  it('the host fault waits for the folio lock and for no invalidate lock, slots_lock or mmu_lock', async () => {
    const sb = await Sandbox.create({
      kernel: '6.18',
      memory: '4MiB',
      gpaSpace: '32MiB',
      userMemory: '8MiB',
      gmemSpace: '32MiB',
      watchdogMs: 200,
    });
    const vm = await sb.createVm({ type: 'default' });
    const gmem = await vm.createGuestMemfd({ size: 2 * PAGE_SIZE, flags: MMAP | INIT_SHARED });
    await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: 2 * PAGE_SIZE, guestMemfd: gmem });
    await gmem.fallocate(['keep_size'], 0, 2 * PAGE_SIZE);
    const { sync, g } = { sync: sb.k.sync, g: sb.k.g };
    const ino = g.files.inode(gmem.file);
    const m = gmem.mmapSync({ size: 2 * PAGE_SIZE });
    // This thread holds the folio lock of page 0: its fault waits, and the watchdog ends the wait.
    const pfn = gmem.folioAt(0)!.pfn;
    expect(sync.mutexTryLock(g.folios.lockWord(pfn), LockClass.FOLIO)).toBe(true);
    expect(() => m.readSync(0, 1)).toThrow(new RegExp(`on folio lock of pfn ${pfn}`));
    sync.mutexUnlock(g.folios.lockWord(pfn));
    // Holding the inode's invalidate lock for write, slots_lock and mmu_lock: page 1 faults at once.
    sync.downWrite(g.inodes.invalidateLockWord(ino), LockClass.INVALIDATE);
    sync.mutexLock(sb.k.vms.slotsLockWord(vm.id), LockClass.SLOTS);
    sync.writeLock(sb.k.vms.mmuLockWord(vm.id), LockClass.MMU);
    expect([...m.readSync(PAGE_SIZE, 2)]).toEqual([0, 0]);
    sync.writeUnlock(sb.k.vms.mmuLockWord(vm.id));
    sync.mutexUnlock(sb.k.vms.slotsLockWord(vm.id));
    sync.upWrite(g.inodes.invalidateLockWord(ino));
    expect(gmem.folioAt(PAGE_SIZE)).toMatchObject({ uptodate: true, refcount: 2 });
    // The fault's orders, as lockdep records them: under mmap_lock only the page allocator's locks
    // (PG_locked has no lockdep map, in the kernel or here).
    for (const d of lockdepDependencies(sb.mem).filter((x) => x.from === 'mm->mmap_lock'))
      expect(['pcp->lock', 'zone->lock']).toContain(d.to);
  });

  it('the mapping holds the file: close leaves it working, munmap releases it and frees its folios', async () => {
    const { sb, gmem } = await sharedFile();
    const m = gmem.mmapSync({ size: PAGE_SIZE });
    m.writeSync(0, new Uint8Array([9]));
    const free = sb.freeHostPages();
    await gmem.close();
    expect([...m.readSync(0, 1)]).toEqual([9]);
    expect(sb.freeHostPages()).toBe(free);
    await m.munmap();
    expect(sb.freeHostPages()).toBe(free + 1);
  });

  it('a host write to a page the RMP assigns to a guest takes an RMP fault: SIGBUS, the page unchanged', async () => {
    // Reachable only through a linked inode (an experiment): an SNP VM's file on a default VM's INIT_SHARED inode.
    const { sb, gmem } = await sharedFile('6.18', 1);
    const snp = await sb.createVm({ type: 'snp' });
    const linked = await snp.linkGuestMemfd(gmem);
    await snp.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: PAGE_SIZE, guestMemfd: linked });
    await snp.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: 'private' });
    await snp.snpLaunchStart();
    await snp.snpLaunchFinish();
    const v = await snp.createVcpu();
    await v.preFaultMemory({ gpa: 0, size: PAGE_SIZE });
    expect(snp.rmpQuery(0)).toMatchObject({ present: true, assigned: true });
    const m = gmem.mmapSync({ size: PAGE_SIZE });
    expect(signalOf(() => m.writeSync(0, new Uint8Array([0xee]))).signal).toBe('SIGBUS');
    expect(m.readSync(0, 1)[0]).not.toBe(0xee);
    // A user access the hardware refused: no kernel write, so no host RMP fault for the auditor.
    expect(sb.stats().hostRmpFaults).toBe(0);
  });
});

describe('GMEM_ONLY memslots on a default VM (576d035e2aef, f029f04ddbec)', () => {
  async function bound(flags: number, kernel: KernelVersionName = '6.18') {
    const { sb, vm, gmem } = await sharedFile(kernel, 4, flags);
    await vm.setUserMemoryRegion2({
      slot: 1,
      flags: ['guest_memfd'],
      guestPhysAddr: 16 * PAGE_SIZE,
      memorySize: 4 * PAGE_SIZE,
      guestMemfd: gmem,
    });
    const vcpu = await vm.createVcpu();
    const slot = sb.k.memslots.lookup(vm.id, 16);
    return { sb, vm, gmem, vcpu, slotFlags: sb.k.memslots.flags(vm.id, slot) };
  }

  it.each(FROM_618)(
    '%s: an MMAP file makes the slot GMEM_ONLY (userspace_addr 0): guest and host share the folio both ways',
    async (kernel) => {
      const { sb, gmem, vcpu, slotFlags } = await bound(MMAP | INIT_SHARED, kernel);
      expect(slotFlags & KVM_MEMSLOT_GMEM_ONLY).toBe(KVM_MEMSLOT_GMEM_ONLY);
      const clears = sb.stats().clears;
      // The guest first: kvm_gmem_get_pfn clears and marks the folio, the host fault does not clear it again.
      expect((await vcpu.write(16 * PAGE_SIZE + 8, new Uint8Array([1, 2, 3]))).ok).toBe(true);
      const m = gmem.mmapSync({ size: 4 * PAGE_SIZE });
      expect([...m.readSync(6, 6)]).toEqual([0, 0, 1, 2, 3, 0]);
      // The host first on another page: the guest's fault finds it up to date.
      m.writeSync(PAGE_SIZE, new Uint8Array([4, 5]));
      expect(dataOf(await vcpu.read(17 * PAGE_SIZE, 3))).toEqual([4, 5, 0]);
      expect(sb.stats().clears - clears).toBe(2);
      // Nothing went through userspace_addr 0.
      expect([...sb.mem.user.subarray(0, 8 * PAGE_SIZE)].every((b) => b === 0)).toBe(true);
      // PUNCH_HOLE zaps the guest's SPTE and the host's PTE: both see the new zeroed folio.
      await gmem.fallocate(['keep_size', 'punch_hole'], 0, 2 * PAGE_SIZE);
      expect(dataOf(await vcpu.read(16 * PAGE_SIZE + 8, 3))).toEqual([0, 0, 0]);
      expect([...m.readSync(PAGE_SIZE, 2)]).toEqual([0, 0]);
      m.writeSync(8, new Uint8Array([6]));
      expect(dataOf(await vcpu.read(16 * PAGE_SIZE + 8, 1))).toEqual([6]);
    },
  );

  it('kvm_gmem_get_pfn does not look at INIT_SHARED: the guest faults a private-initialised MMAP file the host cannot', async () => {
    const { gmem, vcpu, slotFlags } = await bound(MMAP);
    expect(slotFlags & KVM_MEMSLOT_GMEM_ONLY).toBe(KVM_MEMSLOT_GMEM_ONLY);
    expect((await vcpu.write(16 * PAGE_SIZE, new Uint8Array([7]))).ok).toBe(true);
    expect(gmem.folioAt(0)).toMatchObject({ uptodate: true });
    const m = gmem.mmapSync({ size: PAGE_SIZE });
    expect(signalOf(() => m.readSync(0, 1)).signal).toBe('SIGBUS');
  });

  it('without MMAP the slot is not GMEM_ONLY: a default VM has no private gfns, so faults use userspace_addr', async () => {
    const { sb, gmem, vcpu, slotFlags } = await bound(0);
    expect(slotFlags & KVM_MEMSLOT_GMEM_ONLY).toBe(0);
    expect((await vcpu.write(16 * PAGE_SIZE + 1, new Uint8Array([0x42]))).ok).toBe(true);
    expect(sb.mem.user[1]).toBe(0x42);
    expect(gmem.folioAt(0)).toBeNull();
  });

  it("KVM_PRE_FAULT_MEMORY on a GMEM_ONLY slot maps the file's folio", async () => {
    const { gmem, vcpu } = await bound(MMAP | INIT_SHARED);
    await vcpu.preFaultMemory({ gpa: 16 * PAGE_SIZE, size: PAGE_SIZE });
    expect(gmem.folioAt(0)).toMatchObject({ uptodate: true, refcount: 1 });
  });
});

describe('an SNP VM binds an MMAP guest_memfd: its shared faults come from the file too', () => {
  it("a shared access gets the page the fault made the guest's in the RMP: an RMP violation", async () => {
    const sb = await sandbox('6.18');
    const vm = await sb.createVm({ type: 'snp' });
    const gmem = await vm.createGuestMemfd({ size: PAGE_SIZE, flags: ['mmap'] });
    await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: PAGE_SIZE, guestMemfd: gmem });
    await vm.snpLaunchStart();
    await vm.snpLaunchFinish();
    const vcpu = await vm.createVcpu();
    expect(await vcpu.read(0, 1, { private: false })).toEqual({ ok: false, exit: 'rmp_violation' });
    expect(vm.rmpQuery(0)).toMatchObject({ present: true, assigned: true });
    // And the host cannot fault it (no INIT_SHARED on a VM with private memory).
    expect(signalOf(() => gmem.mmapSync({ size: PAGE_SIZE }).readSync(0, 1)).signal).toBe('SIGBUS');
    expect(thrown(() => vm.createGuestMemfdSync({ size: PAGE_SIZE, flags: ['init_shared'] }))).toBeInstanceOf(KvmError);
  });
});

describe('the auditor counts the host PTEs a cached folio has (each a folio reference)', () => {
  it('live mappings audit clean at a quiescent point; a reference a PTE lost is a balance violation', async () => {
    const { sb, gmem } = await sharedFile();
    const a = gmem.mmapSync({ size: 2 * PAGE_SIZE });
    const b = gmem.mmapSync({ size: PAGE_SIZE });
    a.writeSync(0, new Uint8Array(2 * PAGE_SIZE).fill(1));
    b.readSync(0, 1);
    expect(gmem.folioAt(0)!.refcount).toBe(3);
    expect(auditQuiescent(sb.mem).counts.balance).toBe(0);
    // A PTE cleared without its folio_put: the folio keeps a reference nobody holds.
    const word = sb.k.g.vmas.pteWord(b.handle, 0);
    Atomics.store(sb.mem.w, word, 0);
    const r = auditQuiescent(sb.mem);
    expect(r.counts.balance).toBe(1);
    expect(r.violations[0].detail).toMatch(/^cached folio of pfn \d+ has refcount 3 at a quiescent point \(expected 2\)$/);
  });
});
