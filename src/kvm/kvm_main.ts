// virt/kvm/kvm_main.c: the VM and vCPU ioctls that touch memory. Each returns 0 / a value or
// -errno, and validates everything before changing anything.

import { gmemBind, gmemRelease, gmemUnbind } from '../gmem/guest_memfd.js';
import { Errno } from '../shm/errno.js';
import { PAGE_SIZE, SandboxLimitError, isPageAligned } from '../shm/limits.js';
import { P } from '../shm/points.js';
import { C, LockClass } from '../shm/stats.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from './attributes.js';
import type { KvmCtx } from './kvm.js';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from './memslots.js';
import { RET_PF_EMULATE, RET_PF_FIXED, invalidateBegin, invalidateEnd, kvmTdpPageFault } from './mmu.js';
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

function withSlotsLock<T>(k: KvmCtx, vm: number, fn: () => T): T {
  const lock = k.vms.slotsLockWord(vm);
  k.sync.mutexLock(lock, LockClass.SLOTS);
  try {
    return fn();
  } finally {
    k.sync.mutexUnlock(lock);
  }
}

// kvm_arch_has_readonly_mem (x86, 66155de93bcf): writes to a read-only slot are emulated MMIO,
// which a guest with protected state cannot have.
function kvmArchHasReadonlyMem(k: KvmCtx, vm: number): boolean {
  return !k.vms.hasProtectedState(vm);
}

// check_memory_region_flags
function checkMemoryRegionFlags(k: KvmCtx, vm: number, flags: number): boolean {
  let valid = KVM_MEM_LOG_DIRTY_PAGES;
  if (k.vms.hasPrivateMem(vm)) valid |= KVM_MEM_GUEST_MEMFD;
  // Dirty logging of guest_memfd memory is not supported.
  if (flags & KVM_MEM_GUEST_MEMFD) valid &= ~KVM_MEM_LOG_DIRTY_PAGES;
  // guest_memfd is incompatible with read-only memslots; since 66155de93bcf (6.11-rc4), so is a VM
  // with protected state (SEV-ES, SNP): kvm_arch_has_readonly_mem is !has_protected_state.
  if (kvmArchHasReadonlyMem(k, vm) && !(flags & KVM_MEM_GUEST_MEMFD)) valid |= KVM_MEM_READONLY;
  return (flags & ~valid) === 0;
}

// kvm_set_memory_region / __kvm_set_memory_region (KVM_SET_USER_MEMORY_REGION2)
export function kvmSetMemoryRegion(k: KvmCtx, vm: number, mem: UserMemoryRegion2): number {
  return withSlotsLock(k, vm, () => setMemoryRegionLocked(k, vm, mem));
}

function setMemoryRegionLocked(k: KvmCtx, vm: number, m: UserMemoryRegion2): number {
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
    if (old < 0) return -Errno.EINVAL;
    deleteMemslot(k, vm, old);
    return 0;
  }
  const baseGfn = m.guestPhysAddr / PAGE_SIZE;
  const npages = m.memorySize / PAGE_SIZE;
  const gfnLimit = k.memslots.gfnsPerVm;
  if (baseGfn + npages > gfnLimit) {
    throw new SandboxLimitError('guest_phys_addr', `guest_phys_addr + memory_size must stay below ${gfnLimit * PAGE_SIZE} (limits.gfnsPerVm)`);
  }
  if (m.userspaceAddr / PAGE_SIZE + npages > k.mem.limits.userPages) {
    throw new SandboxLimitError('userspace_addr', `userspace_addr + memory_size must stay below ${k.mem.limits.userPages * PAGE_SIZE} (limits.userPages)`);
  }
  if (old >= 0) {
    const o = k.memslots.info(vm, old);
    // Private memslots are immutable, they can only be deleted.
    if (m.flags & KVM_MEM_GUEST_MEMFD || o.flags & KVM_MEM_GUEST_MEMFD) return -Errno.EINVAL;
    if (m.userspaceAddr / PAGE_SIZE !== o.userPage || npages !== o.npages || (m.flags ^ o.flags) & KVM_MEM_READONLY) return -Errno.EINVAL;
    if (baseGfn !== o.baseGfn) {
      if (k.memslots.overlaps(vm, id, baseGfn, baseGfn + npages)) return -Errno.EEXIST;
      moveMemslot(k, vm, old, baseGfn);
    } else {
      k.memslots.setFlags(vm, old, m.flags);
    }
    return 0;
  }
  if (k.memslots.overlaps(vm, -1, baseGfn, baseGfn + npages)) return -Errno.EEXIST;
  const s = k.memslots.freeSlot(vm);
  if (s < 0) throw new SandboxLimitError('slot', `a VM may have at most ${k.memslots.used(vm).length} memslots in the sandbox`);
  if (m.flags & KVM_MEM_GUEST_MEMFD) {
    if (m.gmemFile < 0) return m.gmemFile;
    if (m.guestMemfdOffset + m.memorySize < m.guestMemfdOffset) return -Errno.EINVAL;
    const r = gmemBind(k.g, m.gmemFile, vm, s, baseGfn, m.guestMemfdOffset, npages);
    if (r < 0) return r;
  }
  k.memslots.write(vm, s, {
    id,
    flags: m.flags,
    baseGfn,
    npages,
    userPage: m.userspaceAddr / PAGE_SIZE,
    gmemFile: m.flags & KVM_MEM_GUEST_MEMFD ? m.gmemFile : -1,
    gmemPgoff: m.flags & KVM_MEM_GUEST_MEMFD ? m.guestMemfdOffset / PAGE_SIZE : 0,
  });
  k.memslots.index(vm, baseGfn, baseGfn + npages, s);
  return 0;
}

// kvm_set_memslot(KVM_MR_DELETE): zap the slot's mappings inside an invalidation, then unbind.
function deleteMemslot(k: KvmCtx, vm: number, s: number): void {
  const o = k.memslots.info(vm, s);
  invalidateBegin(k, vm, [o.baseGfn, o.baseGfn + o.npages]);
  k.memslots.index(vm, o.baseGfn, o.baseGfn + o.npages, -1);
  invalidateEnd(k, vm);
  if (o.flags & KVM_MEM_GUEST_MEMFD && o.gmemFile >= 0) gmemUnbind(k.g, o.gmemFile, s);
  k.memslots.clear(vm, s);
}

// kvm_set_memslot(KVM_MR_MOVE)
function moveMemslot(k: KvmCtx, vm: number, s: number, baseGfn: number): void {
  const o = k.memslots.info(vm, s);
  invalidateBegin(k, vm, [o.baseGfn, o.baseGfn + o.npages]);
  k.memslots.index(vm, o.baseGfn, o.baseGfn + o.npages, -1);
  k.memslots.write(vm, s, { ...o, baseGfn });
  k.memslots.index(vm, baseGfn, baseGfn + o.npages, s);
  invalidateEnd(k, vm);
}

// kvm_gmem_release with the VM's slots_lock, as the file's last fput does.
export function kvmGmemRelease(k: KvmCtx, file: number): void {
  const vm = k.g.files.vm(file);
  withSlotsLock(k, vm, () => gmemRelease(k.g, file));
}

// kvm_supported_mem_attributes
function supportedMemAttributes(k: KvmCtx, vm: number): number {
  return k.vms.hasPrivateMem(vm) ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
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
  if (!k.vms.preFaultAllowed(v.vm)) return -Errno.EOPNOTSUPP;
  const gfn = range.gpa / PAGE_SIZE;
  const priv = k.vms.hasPrivateMem(v.vm) && k.attrs.isPrivate(v.vm, gfn);
  const r = kvmTdpPageFault(k, v, gfn, priv, true);
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
  return full === range.size ? r : 0;
}
