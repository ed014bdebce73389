// arch/x86/kvm/mmu/mmu.c and the mmu_invalidate_* helpers of kvm_main.c: invalidation begin/end,
// and the TDP fault path for one gfn with its mmu_invalidate_seq retry.

import { Bug } from '../gmem/bugs.js';
import { folioPut } from '../gmem/filemap.js';
import { gmemGetPfn } from '../gmem/get_pfn.js';
import { Errno } from '../shm/errno.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { P } from '../shm/points.js';
import { C, latencyBucket } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import { TraceKind } from '../shm/trace.js';
import type { KvmCtx } from './ctx.js';
import { KVM_MEMSLOT_GMEM_ONLY, KVM_MEMSLOT_INVALID, KVM_MEM_GUEST_MEMFD, KVM_MEM_READONLY } from './memslots.js';
import { kvmMemIsPrivate } from './private_mem.js';
import { kvmTaskWork } from './task_work.js';
import { NO_HANDLE, Site } from '../shm/slab.js';
import { gmemSharedFrame, makeSpte } from './spte.js';
import { KVM_MEMORY_EXIT_FLAG_PRIVATE, type KvmVcpu } from './vcpu.js';
import { INVALID_GFN } from './vm.js';
import { gfnOf, pgoffOf } from '../shm/frames.js';

export const RET_PF_FIXED = 0;
/** No memslot: MMIO / emulation (pre-fault reports ENOENT). */
export const RET_PF_EMULATE = 1;
/** Try again: an invalidation or a memslot update is in the way. */
export const RET_PF_RETRY = 2;

/** Spin on mmu_invalidate_seq this many loads before sleeping until it moves. */
const SEQ_SPIN = 100;

// kvm_mmu_invalidate_begin + kvm_mmu_invalidate_range_add + kvm_unmap_gfn_range, under mmu_lock.
// The range's attr_filter picks roots only where a VM has mirrored (TDX) roots:
// kvm_gfn_range_filter_to_root_types gives KVM_DIRECT_ROOTS to every other VM, so SNP and
// sw-protected zap shared and private SPTEs alike, as here.
export function invalidateBegin(k: KvmCtx, vm: number, ranges: readonly number[], _filter = 0): void {
  const lock = k.vms.mmuLockWord(vm);
  k.sync.writeLock(lock, LockClass.MMU);
  try {
    invalidateBeginLocked(k, vm, ranges);
  } finally {
    // A watchdog report from the TLB flush must not leave mmu_lock held as well.
    k.sync.writeUnlock(lock);
  }
}

function invalidateBeginLocked(k: KvmCtx, vm: number, ranges: readonly number[]): void {
  // kvm_mmu_invalidate_begin, kvm_mmu_invalidate_range_add: lockdep_assert_held_write(&kvm->mmu_lock).
  k.sync.assertHeldWrite(k.vms.mmuLockWord(vm));
  k.vms.mmuInvalidateBegin(vm);
  let zapped = 0;
  for (let r = 0; r < ranges.length; r += 2) {
    k.vms.mmuInvalidateRangeAdd(vm, ranges[r], ranges[r + 1]);
    zapped += k.sptes.zap(vm, ranges[r], ranges[r + 1]);
  }
  if (zapped > 0) {
    k.stats[C.sptesZapped] += zapped;
    if ((k.g.bugs & Bug['zap-skips-tlb-flush']) === 0) k.stats[C.tlbFlushWaits] += k.vcpus.flushRemoteTlbs(k.sync, vm);
  }
}

// kvm_mmu_invalidate_end under mmu_lock, as __kvm_gmem_invalidate_end takes it.
export function invalidateEnd(k: KvmCtx, vm: number): void {
  const w = k.mem.w;
  const lock = k.vms.mmuLockWord(vm);
  k.sync.writeLock(lock, LockClass.MMU);
  const left = mmuInvalidateEnd(k, vm);
  k.sync.writeUnlock(lock);
  if (left < 0) throw new Error(`vm ${vm}: mmu_invalidate_in_progress went negative`);
  if (Atomics.load(w, k.vms.seqSleepersWord(vm)) > 0) k.sync.wake(k.vms.seqWord(vm), Infinity);
}

// kvm_mmu_invalidate_end: returns the invalidations still in progress.
function mmuInvalidateEnd(k: KvmCtx, vm: number): number {
  // kvm_mmu_invalidate_end: lockdep_assert_held_write(&kvm->mmu_lock).
  k.sync.assertHeldWrite(k.vms.mmuLockWord(vm));
  return k.vms.mmuInvalidateEnd(vm);
}

// mmu_invalidate_retry_gfn: an invalidation covering gfn is in flight, or one finished since `seq`.
export function invalidateRetryGfn(k: KvmCtx, vm: number, seq: number, gfn: number): boolean {
  const w = k.mem.w;
  if (Atomics.load(w, k.vms.inProgressWord(vm)) !== 0) {
    const start = Atomics.load(w, k.vms.rangeStartWord(vm));
    if (start === INVALID_GFN) return true;
    if (gfn >= start && gfn < Atomics.load(w, k.vms.rangeEndWord(vm))) return true;
  }
  return Atomics.load(w, k.vms.seqWord(vm)) !== seq;
}

// kvm_mmu_prepare_memory_fault_exit: the fault ends in a KVM_EXIT_MEMORY_FAULT carrying `err`.
export function memoryFaultExit(k: KvmCtx, v: KvmVcpu, gfn: number, priv: boolean, err: number): number {
  v.exit = { reason: 'memory_fault', gpa: gfn * PAGE_SIZE, size: PAGE_SIZE, flags: priv ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0 };
  k.stats[C.memoryFaultExits]++;
  return err;
}

/** Set by a RET_PF_RETRY: the word whose change is worth trying again for, and its value then. */
const retry = { word: 0, value: 0 };
function retryWhen(word: number, value: number): number {
  retry.word = word;
  retry.value = value;
  return RET_PF_RETRY;
}

/**
 * kvm_mmu_do_page_fault -> kvm_tdp_page_fault for one gfn, once: inside the caller's kvm->srcu
 * read section. Returns RET_PF_FIXED, RET_PF_EMULATE, RET_PF_RETRY (with what to wait for in
 * `retry`), or -errno with a memory fault exit prepared in `v`. `prefetch` is pre-fault's fault.
 */
function kvmMmuDoPageFault(k: KvmCtx, v: KvmVcpu, gfn: number, isPrivate: boolean, prefetch: boolean, write: boolean): number {
  const vm = v.vm;
  const w = k.mem.w;
  k.sync.point(P['fault.begin']);
  // kvm_faultin_pfn: sample mmu_invalidate_seq, then the checks in the kernel's order.
  const seq = Atomics.load(w, k.vms.seqWord(vm));
  if (isPrivate !== kvmMemIsPrivate(k, vm, gfn)) return memoryFaultExit(k, v, gfn, isPrivate, -Errno.EFAULT);
  const gen = k.memslots.generation(vm);
  const s = k.memslots.lookup(vm, gfn);
  if (s === NO_HANDLE) {
    // kvm_handle_noslot_fault: a private access cannot be emulated MMIO, it exits to the VMM.
    return isPrivate ? memoryFaultExit(k, v, gfn, true, -Errno.EFAULT) : RET_PF_EMULATE;
  }
  k.memslots.check(vm, s, Site['kvm_faultin_pfn: slot'], k.sync.tid);
  const flags = k.memslots.flags(vm, s);
  if (flags & KVM_MEMSLOT_INVALID) {
    // 3ccbf6f47098: pre-fault gives up instead, since it retries while holding kvm->srcu.
    if (prefetch && k.version.prefaultInvalidSlotEagain) return -Errno.EAGAIN;
    return retryWhen(k.memslots.generationWord(vm), gen);
  }
  // mmu_invalidate_retry_gfn_unsafe: don't bother faulting in a page being invalidated.
  if (invalidateRetryGfn(k, vm, seq, gfn)) return retryWhen(k.vms.seqWord(vm), seq);
  let frame: number;
  let readonly = false;
  // 89fbe3de01cc (7.4): kvm_gmem_get_pfn keeps no folio reference for the caller.
  let putFrame = false;
  // f029f04ddbec: a GMEM_ONLY slot's shared gfns come from guest_memfd too, not userspace_addr.
  const fromGmem = isPrivate || (flags & KVM_MEMSLOT_GMEM_ONLY) !== 0;
  if (fromGmem) {
    // kvm_mmu_faultin_pfn_gmem (kvm_faultin_pfn_private before 6.18)
    if ((flags & KVM_MEM_GUEST_MEMFD) === 0) return memoryFaultExit(k, v, gfn, isPrivate, -Errno.EFAULT);
    // kvm_gmem_get_index
    const index = pgoffOf(gfn - k.memslots.baseGfn(vm, s) + k.memslots.gmemPgoff(vm, s));
    k.sync.point(P['fault.before_get_pfn']);
    k.memslots.check(vm, s, Site['kvm_gmem_get_pfn: slot->gmem'], k.sync.tid);
    frame = gmemGetPfn(k.g, k.memslots.gmemFileWord(vm, s), s, vm, gfnOf(gfn), index);
    if (frame < 0) return memoryFaultExit(k, v, gfn, isPrivate, frame);
    putFrame = !k.version.getPfnDropsRef;
    k.sync.point(P['fault.after_get_pfn']);
  } else {
    // __gfn_to_pfn_memslot on the VMM's userspace mapping. A write to a READONLY slot gets
    // KVM_PFN_ERR_RO_FAULT, which kvm_handle_error_pfn turns into RET_PF_EMULATE: the
    // emulator cannot write the slot and exits to userspace as MMIO; memory is unchanged.
    readonly = (flags & KVM_MEM_READONLY) !== 0;
    if (write && readonly) return RET_PF_EMULATE;
    frame = k.memslots.userPage(vm, s) + gfn - k.memslots.baseGfn(vm, s);
    if (frame >= k.mem.limits.userPages) return -Errno.EFAULT;
  }
  // d02c357e5bfa (6.8): the unlocked check again now that the pfn is in hand, before mmu_lock.
  if (invalidateRetryGfn(k, vm, seq, gfn)) {
    if (putFrame) folioPut(k.g, frame);
    return retryWhen(k.vms.seqWord(vm), seq);
  }
  k.sync.point(P['fault.before_mmu_lock']);
  const lock = k.vms.mmuLockWord(vm);
  k.sync.readLock(lock, LockClass.MMU);
  // is_page_fault_stale
  if ((k.g.bugs & Bug['fault-skips-seq-recheck']) === 0 && invalidateRetryGfn(k, vm, seq, gfn)) {
    k.sync.readUnlock(lock);
    if (putFrame) folioPut(k.g, frame);
    return retryWhen(k.vms.seqWord(vm), seq);
  }
  // tdp_mmu_set_spte_atomic: lockdep_assert_held_read(&kvm->mmu_lock).
  k.sync.assertHeldRead(lock);
  const spte = makeSpte(fromGmem && !isPrivate ? gmemSharedFrame(frame) : frame, isPrivate, readonly);
  const old = k.sptes.get(vm, gfn);
  k.stats[C.sptesInstalled]++;
  if (old === 0 || old === spte) {
    k.sptes.set(vm, gfn, spte);
    k.sync.readUnlock(lock);
  } else {
    k.sync.readUnlock(lock);
    replaceLeafSpte(k, vm, gfn, spte);
  }
  if (putFrame) folioPut(k.g, frame);
  return RET_PF_FIXED;
}

/**
 * tdp_mmu_map_handle_target_level meeting a present leaf that maps another page: the kernel
 * WARNs (leaf_spte_change_needs_tlb_flush; every change of a slot's backing zaps first, but a
 * flags-only update that drops KVM_MEM_GUEST_MEMFD from a GMEM_ONLY slot, refused since
 * 9935df5333aa, does not) and flushes the TLBs after the change. The model makes the change
 * under mmu_lock for write, as a zap does, so that a vCPU's audited TLB hit can tell it from a
 * change without a flush.
 */
function replaceLeafSpte(k: KvmCtx, vm: number, gfn: number, spte: number): void {
  const lock = k.vms.mmuLockWord(vm);
  k.sync.writeLock(lock, LockClass.MMU);
  try {
    k.sptes.set(vm, gfn, spte);
    k.stats[C.tlbFlushWaits] += k.vcpus.flushRemoteTlbs(k.sync, vm);
  } finally {
    k.sync.writeUnlock(lock);
  }
}

/** Counts one fault (however many retries it took) and its latency. */
function accountFault(k: KvmCtx, gfn: number, isPrivate: boolean, t0: number): void {
  const ns = (performance.now() - t0) * 1e6;
  const stats = k.stats;
  stats[C.faults]++;
  stats[isPrivate ? C.faultsPrivate : C.faultsShared]++;
  stats[C.faultNs] += ns;
  k.latency[latencyBucket(ns)]++;
  if (k.tracer.on) k.tracer.record(TraceKind.FAULT, gfn, k.tracer.now() - ns / 1e6);
}

/**
 * A vCPU's EPT/NPT violation on gfn, from guest mode: each try runs in its own kvm->srcu read
 * section, as vcpu_run holds it outside guest mode only; a RET_PF_RETRY re-enters the guest,
 * which faults again once what it waited for changed. Returns RET_PF_FIXED, RET_PF_EMULATE, or
 * -errno with a memory fault exit prepared in `v`.
 */
export function kvmTdpPageFault(k: KvmCtx, v: KvmVcpu, gfn: number, isPrivate: boolean, write = false): number {
  const t0 = performance.now();
  const srcu = k.vms.srcu(v.vm);
  const w = k.mem.w;
  try {
    for (;;) {
      k.sync.srcuReadLock(srcu, LockClass.SRCU);
      let r: number;
      try {
        r = kvmMmuDoPageFault(k, v, gfn, isPrivate, false, write);
      } finally {
        k.sync.srcuReadUnlock(srcu);
        kvmTaskWork(k);
      }
      if (r !== RET_PF_RETRY) return r;
      k.stats[C.faultRetries]++;
      if (Atomics.load(w, retry.word) === retry.value) waitForRetry(k, v.vm, retry.word, retry.value);
    }
  } finally {
    accountFault(k, gfn, isPrivate, t0);
  }
}

/**
 * Sleeps until `word` leaves `value` (an invalidation ended, or a memslot update published).
 * The kernel re-enters the guest meanwhile; a vCPU here holds no lock, so a long invalidation (a
 * paused VMM) is no hang for the watchdog.
 */
function waitForRetry(k: KvmCtx, vm: number, word: number, value: number): void {
  const w = k.mem.w;
  const sleepers = k.vms.seqSleepersWord(vm);
  Atomics.add(w, sleepers, 1);
  try {
    k.sync.idleWhileEquals(word, value, SEQ_SPIN);
  } finally {
    Atomics.sub(w, sleepers, 1);
  }
}

/**
 * kvm_tdp_map_page for KVM_PRE_FAULT_MEMORY: retries while holding the ioctl's kvm->srcu read
 * section, until the page is mapped, an error, or a signal. Returns RET_PF_FIXED,
 * RET_PF_EMULATE or -errno.
 */
export function kvmTdpMapPage(k: KvmCtx, v: KvmVcpu, gfn: number, isPrivate: boolean): number {
  const t0 = performance.now();
  try {
    for (;;) {
      if (k.sync.signalPending()) return -Errno.EINTR;
      const r = kvmMmuDoPageFault(k, v, gfn, isPrivate, true, false);
      if (r !== RET_PF_RETRY) return r;
      k.stats[C.faultRetries]++;
      // cond_resched, in a loop only another thread (or a signal) can end.
      k.sync.spinWhileEqualsInterruptible(retry.word, retry.value);
    }
  } finally {
    accountFault(k, gfn, isPrivate, t0);
  }
}

// kvm_arch_flush_shadow_memslot / kvm_zap_gfn_range: zaps under mmu_lock and flushes the TLBs.
export function zapGfnRange(k: KvmCtx, vm: number, start: number, end: number): void {
  const lock = k.vms.mmuLockWord(vm);
  k.sync.writeLock(lock, LockClass.MMU);
  try {
    // kvm_unmap_gfn_range: lockdep_assert_once(kvm->mmu_invalidate_in_progress || lockdep_is_held(&kvm->slots_lock)).
    if (Atomics.load(k.mem.w, k.vms.inProgressWord(vm)) === 0) k.sync.assertHeld(k.vms.slotsLockWord(vm));
    const zapped = k.sptes.zap(vm, start, end);
    if (zapped > 0) {
      k.stats[C.sptesZapped] += zapped;
      k.stats[C.tlbFlushWaits] += k.vcpus.flushRemoteTlbs(k.sync, vm);
    }
  } finally {
    k.sync.writeUnlock(lock);
  }
}
