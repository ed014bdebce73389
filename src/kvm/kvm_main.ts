// virt/kvm/kvm_main.c: the VM and vCPU ioctls that touch memory. Each returns 0 / a value or
// -errno, and validates everything before changing anything.

import { Bug } from '../gmem/bugs.js';
import { gmemSupportsMmap } from '../gmem/flags.js';
import { gmemBindCommit, gmemBindPrepare, gmemUnbind } from '../gmem/guest_memfd.js';
import { Errno } from '../shm/errno.js';
import { LIMITS, PAGE_SIZE, SandboxLimitError, assert, isPageAligned } from '../shm/limits.js';
import { NO_HANDLE } from '../shm/slab.js';
import { P } from '../shm/points.js';
import { C } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from './attributes.js';
import type { KvmCtx } from './ctx.js';
import { withMutex, withSlotsLock } from './locking.js';
import { kvmMemIsPrivate } from './private_mem.js';
import { kvmTaskWork } from './task_work.js';
import {
  KVM_MEMSLOT_GMEM_ONLY,
  KVM_MEMSLOT_INVALID,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  type MemslotInfo,
} from './memslots.js';
import { RET_PF_EMULATE, RET_PF_FIXED, invalidateBegin, invalidateEnd, kvmTdpMapPage, zapGfnRange } from './mmu.js';
import type { KvmVcpu } from './vcpu.js';

/** KVM_USER_MEM_SLOTS on x86 */
export const KVM_USER_MEM_SLOTS = 32764;

export interface UserMemoryRegion2 {
  slot: number;
  flags: number;
  guestPhysAddr: number;
  memorySize: number;
  userspaceAddr: number;
  /** The gmem file behind the guest_memfd fd, or -errno from resolving the fd (EBADF, EINVAL). */
  gmemFile: number;
  guestMemfdOffset: number;
}

// kvm_arch_has_readonly_mem (x86, 66155de93bcf): writes to a read-only slot are emulated MMIO,
// which a guest with protected state cannot have.
function kvmArchHasReadonlyMem(k: KvmCtx, vm: number): boolean {
  return !k.version.readonlyRefusedOnSnp || !k.vms.hasProtectedState(vm);
}

// check_memory_region_flags
function checkMemoryRegionFlags(k: KvmCtx, vm: number, flags: number): boolean {
  let valid = KVM_MEM_LOG_DIRTY_PAGES;
  // d1e54dd08f16 (6.18): any VM may bind guest_memfd, not only one with private memory.
  if (k.version.gmemOnDefaultVm || k.vms.hasPrivateMem(vm)) valid |= KVM_MEM_GUEST_MEMFD;
  // Dirty logging of guest_memfd memory is not supported.
  if (flags & KVM_MEM_GUEST_MEMFD) valid &= ~KVM_MEM_LOG_DIRTY_PAGES;
  // guest_memfd is incompatible with read-only memslots; since 66155de93bcf (6.11-rc4), so is a VM
  // with protected state (SEV-ES, SNP): kvm_arch_has_readonly_mem is !has_protected_state.
  if (kvmArchHasReadonlyMem(k, vm) && !(flags & KVM_MEM_GUEST_MEMFD)) valid |= KVM_MEM_READONLY;
  return (flags & ~valid) === 0;
}

// kvm_set_memory_region / __kvm_set_memory_region (KVM_SET_USER_MEMORY_REGION2)
export function kvmSetMemoryRegion(k: KvmCtx, vm: number, mem: UserMemoryRegion2): number {
  // The planted bug: kvm->lock nested inside slots_lock (Documentation/virt/kvm/locking.rst has
  // kvm->lock outside it, as sev_mem_enc_ioctl takes them).
  const inverted = (k.g.bugs & Bug['memslot-update-takes-kvm-lock']) !== 0;
  const r = withSlotsLock(k, vm, () =>
    inverted
      ? withMutex(k, k.vms.kvmLockWord(vm), LockClass.KVM_LOCK, () => setMemoryRegionLocked(k, vm, mem))
      : setMemoryRegionLocked(k, vm, mem),
  );
  kvmTaskWork(k);
  return r;
}

function setMemoryRegionLocked(k: KvmCtx, vm: number, m: UserMemoryRegion2): number {
  // kvm_set_memory_region: lockdep_assert_held(&kvm->slots_lock).
  k.sync.assertHeld(k.vms.slotsLockWord(vm));
  if (!checkMemoryRegionFlags(k, vm, m.flags)) return -Errno.EINVAL;
  const asId = Math.floor(m.slot / 65536);
  const id = m.slot % 65536;
  if (m.slot < 0 || asId !== 0 || id >= KVM_USER_MEM_SLOTS) return -Errno.EINVAL;
  if (!(m.memorySize >= 0) || !isPageAligned(m.memorySize)) return -Errno.EINVAL;
  if (!(m.guestPhysAddr >= 0) || !isPageAligned(m.guestPhysAddr)) return -Errno.EINVAL;
  if (!(m.userspaceAddr >= 0) || !isPageAligned(m.userspaceAddr)) return -Errno.EINVAL;
  if (m.flags & KVM_MEM_GUEST_MEMFD && (!(m.guestMemfdOffset >= 0) || !isPageAligned(m.guestMemfdOffset))) return -Errno.EINVAL;
  const old = k.memslots.byId(vm, id);
  if (m.memorySize === 0) {
    if (old === NO_HANDLE) return -Errno.EINVAL;
    kvmSetMemslot(k, vm, old, NO_HANDLE, MemslotChange.DELETE);
    return 0;
  }
  const baseGfn = m.guestPhysAddr / PAGE_SIZE;
  const npages = m.memorySize / PAGE_SIZE;
  const gfnLimit = k.memslots.gfnsPerVm;
  if (baseGfn + npages > gfnLimit) {
    throw new SandboxLimitError(
      'guest_phys_addr',
      `guest_phys_addr + memory_size must stay below ${gfnLimit * PAGE_SIZE} (limits.gfnsPerVm)`,
    );
  }
  if (m.userspaceAddr / PAGE_SIZE + npages > k.mem.limits.userPages) {
    throw new SandboxLimitError(
      'userspace_addr',
      `userspace_addr + memory_size must stay below ${k.mem.limits.userPages * PAGE_SIZE} (limits.userPages)`,
    );
  }
  const next: MemslotInfo = {
    id,
    flags: m.flags,
    baseGfn,
    npages,
    userPage: m.userspaceAddr / PAGE_SIZE,
    gmemFile: NO_HANDLE,
    gmemPgoff: 0,
  };
  if (old !== NO_HANDLE) {
    const o = k.memslots.info(vm, old);
    // Private memslots are immutable, they can only be deleted.
    if (m.flags & KVM_MEM_GUEST_MEMFD) return -Errno.EINVAL;
    // 9935df5333aa: nor may a change drop KVM_MEM_GUEST_MEMFD from one.
    if (o.flags & KVM_MEM_GUEST_MEMFD && k.version.rejectGmemFlagsChange) return -Errno.EINVAL;
    if (m.userspaceAddr / PAGE_SIZE !== o.userPage || npages !== o.npages || (m.flags ^ o.flags) & KVM_MEM_READONLY) return -Errno.EINVAL;
    let change: number;
    if (baseGfn !== o.baseGfn) change = MemslotChange.MOVE;
    else if (m.flags !== o.flags) change = MemslotChange.FLAGS_ONLY;
    else return 0;
    if (change === MemslotChange.MOVE && k.memslots.overlaps(vm, id, baseGfn, baseGfn + npages)) return -Errno.EEXIST;
    kvmSetMemslot(k, vm, old, allocMemslot(k, vm, next), change);
    return 0;
  }
  if (k.memslots.overlaps(vm, -1, baseGfn, baseGfn + npages)) return -Errno.EEXIST;
  if (k.memslots.used(vm).length >= LIMITS.MAX_MEMSLOTS)
    throw new SandboxLimitError('slot', `a VM may have at most ${LIMITS.MAX_MEMSLOTS} memslots in the sandbox`);
  if (m.flags & KVM_MEM_GUEST_MEMFD) {
    if (m.gmemFile < 0) return m.gmemFile;
    if (m.guestMemfdOffset + m.memorySize < m.guestMemfdOffset) return -Errno.EINVAL;
    // The file checks of kvm_gmem_bind come before the slot exists; then it is bound, unpublished.
    next.gmemFile = m.gmemFile;
    next.gmemPgoff = m.guestMemfdOffset / PAGE_SIZE;
    // kvm_gmem_bind sets it (576d035e2aef): here before the record is written; a failed bind
    // frees it unpublished. 2e646bcfcf90 (7.4): every slot, with gmem_in_place_conversion on.
    const mmap = k.version.gmemOnDefaultVm && gmemSupportsMmap(k.g, k.g.files.inode(m.gmemFile));
    if (mmap || k.g.inPlace) next.flags |= KVM_MEMSLOT_GMEM_ONLY;
  }
  const h = allocMemslot(k, vm, next);
  if (m.flags & KVM_MEM_GUEST_MEMFD) {
    // kvm_gmem_bind; from 7.4 kvm_gmem_prepare_memory_region, then, with the memslot ready
    // (nothing after this point can fail in the model), kvm_gmem_commit_memory_region.
    let r = gmemBindPrepare(k.g, m.gmemFile, vm, m.guestMemfdOffset, npages);
    if (r === 0) r = gmemBindCommit(k.g, m.gmemFile, h, baseGfn, m.guestMemfdOffset, npages);
    if (r < 0) {
      k.memslots.free(vm, h);
      return r;
    }
  }
  kvmSetMemslot(k, vm, NO_HANDLE, h, MemslotChange.CREATE);
  return 0;
}

/** enum kvm_mr_change */
const MemslotChange = { CREATE: 0, DELETE: 1, MOVE: 2, FLAGS_ONLY: 3 } as const;

function allocMemslot(k: KvmCtx, vm: number, m: MemslotInfo): number {
  const h = k.memslots.alloc(vm, m);
  assert(h !== NO_HANDLE, 'memslot records suffice for every slot of both sets plus one change');
  return h;
}

// kvm_swap_active_memslots: publish the inactive set, then wait for every reader of the old one.
function swapActiveMemslots(k: KvmCtx, vm: number): void {
  // Under slots_lock: "there can only be one waiter, since the wait happens under slots_lock" (kvm_mmu_notifier_invalidate_range_end).
  k.sync.assertHeld(k.vms.slotsLockWord(vm));
  k.memslots.swap(vm);
  // Faults that retried on an INVALID slot wait for the generation to move.
  k.sync.wake(k.memslots.generationWord(vm), Infinity);
  if ((k.g.bugs & Bug['memslot-update-skips-synchronize-srcu']) === 0) k.sync.synchronizeSrcu(k.vms.srcu(vm), LockClass.SRCU);
}

// kvm_activate_memslot: publish, wait, then bring the other set up to date.
function activateMemslot(k: KvmCtx, vm: number, old: number, next: number): void {
  swapActiveMemslots(k, vm);
  k.memslots.replace(vm, old, next);
}

// kvm_set_memslot, under slots_lock: a slot being deleted or moved is first published as an
// INVALID copy (faults that meet it retry) and its mappings zapped once no reader can still use
// the old slot; the slot records are freed only after the last publish was waited for.
function kvmSetMemslot(k: KvmCtx, vm: number, old: number, next: number, change: number): void {
  let invalid = NO_HANDLE;
  if (change === MemslotChange.DELETE || change === MemslotChange.MOVE) {
    // kvm_invalidate_memslot
    const o = k.memslots.info(vm, old);
    // kvm_copy_memslot copies neither gmem.file nor gmem.pgoff: a fault retries before either.
    invalid = allocMemslot(k, vm, { ...o, flags: o.flags | KVM_MEMSLOT_INVALID, gmemFile: NO_HANDLE, gmemPgoff: 0 });
    k.memslots.replace(vm, old, invalid);
    swapActiveMemslots(k, vm);
    // No reader of the old slot is left; its mappings go before the second publish.
    k.sync.point(P['memslot.between_publishes']);
    // kvm_arch_flush_shadow_memslot
    zapGfnRange(k, vm, o.baseGfn, o.baseGfn + o.npages);
  }
  switch (change) {
    case MemslotChange.CREATE: // kvm_create_memslot
      k.memslots.replace(vm, NO_HANDLE, next);
      activateMemslot(k, vm, NO_HANDLE, next);
      break;
    case MemslotChange.DELETE: // kvm_delete_memslot
      k.memslots.replace(vm, old, NO_HANDLE);
      activateMemslot(k, vm, invalid, NO_HANDLE);
      break;
    case MemslotChange.MOVE: // kvm_move_memslot
      k.memslots.replace(vm, old, next);
      activateMemslot(k, vm, invalid, next);
      break;
    case MemslotChange.FLAGS_ONLY: // kvm_update_flags_memslot
      k.memslots.replace(vm, old, next);
      activateMemslot(k, vm, old, next);
      break;
  }
  // kvm_commit_memory_region: DELETE frees the slot with its metadata (the gmem binding);
  // MOVE and FLAGS_ONLY free only the old slot's memory.
  if (change === MemslotChange.DELETE) kvmFreeMemslot(k, vm, old);
  else if (old !== NO_HANDLE) k.memslots.free(vm, old);
  if (invalid !== NO_HANDLE) k.memslots.free(vm, invalid);
}

// kvm_free_memslot
function kvmFreeMemslot(k: KvmCtx, vm: number, s: number): void {
  if (k.memslots.flags(vm, s) & KVM_MEM_GUEST_MEMFD) gmemUnbind(k.g, vm, s, k.memslots.gmemFileWord(vm, s));
  k.memslots.free(vm, s);
}

// kvm_destroy_vm's memory side, once no gmem file pins the VM: every memslot freed.
export function kvmDestroyVm(k: KvmCtx, vm: number): boolean {
  return withSlotsLock(k, vm, () => {
    if (k.g.files.anyOfVm(vm)) return false;
    const slots = k.memslots.used(vm);
    for (const s of slots) {
      k.memslots.replace(vm, s, NO_HANDLE);
      activateMemslot(k, vm, s, NO_HANDLE);
      kvmFreeMemslot(k, vm, s);
    }
    zapGfnRange(k, vm, 0, k.memslots.gfnsPerVm);
    k.vms.destroy(vm);
    return true;
  });
}

// kvm_supported_mem_attributes (kvm_supported_vm_mem_attributes in 7.4, where
// gmem_in_place_conversion turns the VM's attributes off: 537ec2b15fdd). `vm` null: /dev/kvm.
export function supportedMemAttributes(k: KvmCtx, vm: number | null): number {
  if (k.g.inPlace) return 0;
  return vm === null || k.vms.hasPrivateMem(vm) ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
}

// kvm_vm_ioctl_set_mem_attributes + kvm_vm_set_mem_attributes
export function kvmSetMemoryAttributes(k: KvmCtx, vm: number, address: number, size: number, attributes: number, flags: number): number {
  if (flags !== 0) return -Errno.EINVAL;
  if (attributes & ~supportedMemAttributes(k, vm)) return -Errno.EINVAL;
  if (!(size > 0) || !(address >= 0)) return -Errno.EINVAL;
  if (!isPageAligned(address) || !isPageAligned(size)) return -Errno.EINVAL;
  const start = address / PAGE_SIZE;
  const end = start + size / PAGE_SIZE;
  if (end > k.attrs.gfnsPerVm) {
    throw new SandboxLimitError('address', `address + size must stay below ${k.attrs.gfnsPerVm * PAGE_SIZE} (limits.gfnsPerVm)`);
  }
  return withSlotsLock(k, vm, () => {
    if (k.attrs.rangeHas(vm, start, end, attributes)) return 0;
    // kvm_handle_gfn_range invalidates only where memslots map the range, slot by slot.
    const ranges = k.memslots.mappedRanges(vm, start, end);
    if (ranges.length > 0) invalidateBegin(k, vm, ranges);
    k.sync.point(P['set_attributes.after_invalidate_begin']);
    k.attrs.set(vm, start, end, attributes);
    if (ranges.length > 0) invalidateEnd(k, vm);
    k.stats[C.conversions]++;
    return 0;
  });
}

export interface PreFaultRange {
  gpa: number;
  size: number;
  flags: number;
}

// kvm_arch_vcpu_pre_fault_memory + kvm_tdp_map_page: bytes mapped from range.gpa, or -errno.
function archPreFault(k: KvmCtx, v: KvmVcpu, range: PreFaultRange): number {
  // 5932ca411e53: pre_fault_allowed (set at LAUNCH_FINISH for SNP); before it nothing refused.
  if (k.version.prefaultNeedsLaunch && !k.vms.preFaultAllowed(v.vm)) return -Errno.EOPNOTSUPP;
  const gfn = range.gpa / PAGE_SIZE;
  const priv = k.vms.hasPrivateMem(v.vm) && kvmMemIsPrivate(k, v.vm, gfn);
  const r = kvmTdpMapPage(k, v, gfn, priv);
  if (r === RET_PF_FIXED) {
    k.stats[C.preFaultedPages]++;
    return PAGE_SIZE;
  }
  if (r === RET_PF_EMULATE) return -Errno.ENOENT;
  return r < 0 ? r : -Errno.EIO;
}

// kvm_vcpu_pre_fault_memory (KVM_PRE_FAULT_MEMORY): advances range as it goes; succeeds if any
// page was mapped, else returns the error.
export function kvmVcpuPreFaultMemory(k: KvmCtx, v: KvmVcpu, range: PreFaultRange): number {
  if (range.flags !== 0) return -Errno.EINVAL;
  if (!isPageAligned(range.gpa) || !isPageAligned(range.size) || !(range.gpa >= 0) || !(range.size > 0)) return -Errno.EINVAL;
  const full = range.size;
  let r = 0;
  const srcu = k.vms.srcu(v.vm);
  // One read section across the whole walk, as the kernel holds it.
  k.sync.srcuReadLock(srcu, LockClass.SRCU);
  try {
    while (range.size > 0) {
      if (k.sync.signalPending()) {
        r = -Errno.EINTR;
        break;
      }
      r = archPreFault(k, v, range);
      if (r < 0) break;
      range.size -= r;
      range.gpa += r;
    }
  } finally {
    k.sync.srcuReadUnlock(srcu);
  }
  kvmTaskWork(k);
  return full === range.size ? r : 0;
}
