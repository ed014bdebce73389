// arch/x86/kvm/mmu/mmu.c and the mmu_invalidate_* helpers of kvm_main.c: invalidation begin/end,
// and the TDP fault path for one gfn with its mmu_invalidate_seq retry.

import { Bug } from '../gmem/bugs.js';
import { folioPut } from '../gmem/filemap.js';
import { gmemGetPfn } from '../gmem/guest_memfd.js';
import { Errno } from '../shm/errno.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { P } from '../shm/points.js';
import { C, LockClass, latencyBucket } from '../shm/stats.js';
import { TraceKind } from '../shm/trace.js';
import type { KvmCtx } from './kvm.js';
import { KVM_MEM_GUEST_MEMFD } from './memslots.js';
import { makeSpte } from './spte.js';
import { KVM_MEMORY_EXIT_FLAG_PRIVATE, type KvmVcpu } from './vcpu.js';
import { INVALID_GFN } from './vm.js';

export const RET_PF_FIXED = 0;
/** No memslot: MMIO / emulation (pre-fault reports ENOENT). */
export const RET_PF_EMULATE = 1;

/** Spin on mmu_invalidate_seq this many loads before sleeping until it moves. */
const SEQ_SPIN = 100;

// kvm_mmu_invalidate_begin + kvm_mmu_invalidate_range_add + kvm_unmap_gfn_range, under mmu_lock.
export function invalidateBegin(k: KvmCtx, vm: number, ranges: readonly number[]): void {
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
  const w = k.mem.w;
  if (Atomics.add(w, k.vms.inProgressWord(vm), 1) === 0) {
    Atomics.store(w, k.vms.rangeStartWord(vm), INVALID_GFN);
    Atomics.store(w, k.vms.rangeEndWord(vm), INVALID_GFN);
  }
  let zapped = 0;
  for (let r = 0; r < ranges.length; r += 2) {
    const start = ranges[r];
    const end = ranges[r + 1];
    const s0 = Atomics.load(w, k.vms.rangeStartWord(vm));
    if (s0 === INVALID_GFN) {
      Atomics.store(w, k.vms.rangeStartWord(vm), start);
      Atomics.store(w, k.vms.rangeEndWord(vm), end);
    } else {
      Atomics.store(w, k.vms.rangeStartWord(vm), Math.min(s0, start));
      Atomics.store(w, k.vms.rangeEndWord(vm), Math.max(Atomics.load(w, k.vms.rangeEndWord(vm)), end));
    }
    zapped += k.sptes.zap(vm, start, end);
  }
  if (zapped > 0) {
    k.stats[C.sptesZapped] += zapped;
    if ((k.g.bugs & Bug['zap-skips-tlb-flush']) === 0) k.vcpus.flushRemoteTlbs(k.sync, vm);
  }
}

// kvm_mmu_invalidate_end, under mmu_lock.
export function invalidateEnd(k: KvmCtx, vm: number): void {
  const w = k.mem.w;
  const lock = k.vms.mmuLockWord(vm);
  k.sync.writeLock(lock, LockClass.MMU);
  Atomics.add(w, k.vms.seqWord(vm), 1);
  const left = Atomics.sub(w, k.vms.inProgressWord(vm), 1) - 1;
  k.sync.writeUnlock(lock);
  if (left < 0) throw new Error(`vm ${vm}: mmu_invalidate_in_progress went negative`);
  if (Atomics.load(w, k.vms.seqSleepersWord(vm)) > 0) k.sync.wake(k.vms.seqWord(vm), Infinity);
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

/**
 * Waits (spin, then sleep) until mmu_invalidate_seq leaves `seq`: the in-flight invalidation
 * ended. The kernel returns RET_PF_RETRY and re-enters the guest meanwhile; a vCPU here is not
 * blocked on a lock, so a long invalidation (a paused VMM) is no hang for the watchdog.
 */
function waitForInvalidation(k: KvmCtx, vm: number, seq: number): void {
  const w = k.mem.w;
  const sleepers = k.vms.seqSleepersWord(vm);
  Atomics.add(w, sleepers, 1);
  try {
    k.sync.idleWhileEquals(k.vms.seqWord(vm), seq, SEQ_SPIN);
  } finally {
    Atomics.sub(w, sleepers, 1);
  }
}

// kvm_mmu_prepare_memory_fault_exit: the fault ends in a KVM_EXIT_MEMORY_FAULT carrying `err`.
function memoryFaultExit(k: KvmCtx, v: KvmVcpu, gfn: number, priv: boolean, err: number): number {
  v.exit = { reason: 'memory_fault', gpa: gfn * PAGE_SIZE, size: PAGE_SIZE, flags: priv ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0 };
  k.stats[C.memoryFaultExits]++;
  return err;
}

/**
 * kvm_mmu_page_fault -> kvm_tdp_page_fault for one gfn: maps it, retrying while invalidations
 * race. Returns RET_PF_FIXED, RET_PF_EMULATE, or -errno with a memory fault exit prepared in `v`.
 * `interruptible` (pre-fault) lets a pending signal end the retry loop with -EINTR.
 */
export function kvmTdpPageFault(k: KvmCtx, v: KvmVcpu, gfn: number, isPrivate: boolean, interruptible = false): number {
  const t0 = performance.now();
  const vm = v.vm;
  const w = k.mem.w;
  const stats = k.stats;
  stats[C.faults]++;
  stats[isPrivate ? C.faultsPrivate : C.faultsShared]++;
  try {
    for (;;) {
      k.sync.point(P['fault.begin']);
      const seq = Atomics.load(w, k.vms.seqWord(vm));
      // mmu_invalidate_retry_gfn_unsafe: don't bother faulting in a page being invalidated.
      if (invalidateRetryGfn(k, vm, seq, gfn)) {
        stats[C.faultRetries]++;
        if (interruptible && k.sync.signalPending()) return -Errno.EINTR;
        if (Atomics.load(w, k.vms.seqWord(vm)) === seq) waitForInvalidation(k, vm, seq);
        continue;
      }
      if (isPrivate !== k.attrs.isPrivate(vm, gfn)) return memoryFaultExit(k, v, gfn, isPrivate, -Errno.EFAULT);
      const s = k.memslots.slotOf(vm, gfn);
      if (s < 0) {
        // kvm_handle_noslot_fault: a private access cannot be emulated MMIO, it exits to the VMM.
        return isPrivate ? memoryFaultExit(k, v, gfn, true, -Errno.EFAULT) : RET_PF_EMULATE;
      }
      let frame: number;
      if (isPrivate) {
        // kvm_faultin_pfn_private
        if ((k.memslots.flags(vm, s) & KVM_MEM_GUEST_MEMFD) === 0) return memoryFaultExit(k, v, gfn, true, -Errno.EFAULT);
        const index = gfn - k.memslots.baseGfn(vm, s) + k.memslots.gmemPgoff(vm, s);
        k.sync.point(P['fault.before_get_pfn']);
        frame = gmemGetPfn(k.g, k.memslots.gmemFile(vm, s), s, vm, gfn, index);
        if (frame < 0) return memoryFaultExit(k, v, gfn, true, frame);
        k.sync.point(P['fault.after_get_pfn']);
      } else {
        // __gfn_to_pfn_memslot on the VMM's userspace mapping
        frame = k.memslots.userPage(vm, s) + gfn - k.memslots.baseGfn(vm, s);
        if (frame >= k.mem.limits.userPages) return -Errno.EFAULT;
      }
      k.sync.point(P['fault.before_mmu_lock']);
      const lock = k.vms.mmuLockWord(vm);
      k.sync.readLock(lock, LockClass.MMU);
      // is_page_fault_stale
      if ((k.g.bugs & Bug['fault-skips-seq-recheck']) === 0 && invalidateRetryGfn(k, vm, seq, gfn)) {
        k.sync.readUnlock(lock);
        if (isPrivate) folioPut(k.g, frame);
        stats[C.faultRetries]++;
        if (interruptible && k.sync.signalPending()) return -Errno.EINTR;
        continue;
      }
      k.sptes.set(vm, gfn, makeSpte(frame, isPrivate));
      stats[C.sptesInstalled]++;
      k.sync.readUnlock(lock);
      if (isPrivate) folioPut(k.g, frame);
      return RET_PF_FIXED;
    }
  } finally {
    const ns = (performance.now() - t0) * 1e6;
    stats[C.faultNs] += ns;
    k.latency[latencyBucket(ns)]++;
    if (k.tracer.on) k.tracer.record(TraceKind.FAULT, gfn, k.tracer.now() - ns / 1e6);
  }
}
