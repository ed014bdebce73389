// Lock classes, as lockdep sees them: one class per kind of lock (per init site in the kernel:
// every VM's slots_lock is one class, every folio lock is one class). A call site names the class
// of the lock it takes; lockdep.ts records the order classes are taken in, and the stats keep
// their coarser groups (shm/stats.ts), to which each class maps.

import { LockStat } from '../stats.js';

/** The classes the model's locks belong to, in the order the kernel nests them (roughly as the kernel nests them, outermost first). */
export const LockClass = {
  /** kvm->lock: sev_mem_enc_ioctl holds it around every SEV command. */
  KVM_LOCK: 0,
  /** kvm->slots_lock */
  SLOTS: 1,
  /** kvm->srcu (an srcu_struct: read sections, and synchronize_srcu waiting for them). */
  SRCU: 2,
  /** mapping->invalidate_lock of a guest_memfd inode (filemap_invalidate_lock, an rwsem). */
  INVALIDATE: 3,
  /** The guest_memfd inode and file tables' lock (the model's stand-in for the VFS's). */
  GMEM_TABLE: 4,
  /** The folio lock (PG_locked). */
  FOLIO: 5,
  /** The firmware command lock (sev_cmd_mutex), in-process firmware only. */
  FIRMWARE: 6,
  /** kvm->mmu_lock (an rwlock_t on x86). */
  MMU: 7,
  /** A per-thread page list's lock (pcp->lock). */
  PCP: 8,
  /** The pfn allocator's zone lock (zone->lock). */
  ZONE: 9,
  /**
   * The VMM process's mm->mmap_lock (an rwsem): mmap and munmap write, a host access reads. It
   * nests outside the folio lock; it is last here only so that no other class's number moved.
   */
  MMAP: 10,
  /** vcpu->mutex: every vCPU ioctl holds it; kvm_lock_all_vcpus takes them all under kvm->lock. */
  VCPU_MUTEX: 11,
} as const;
export type LockClass = (typeof LockClass)[keyof typeof LockClass];

interface ClassInfo {
  readonly name: string;
  /** The stats group its waits are counted in. */
  readonly stat: LockStat;
  /**
   * Whether the kernel's lockdep sees it. PG_locked is a page-flag bit lock with no lockdep map,
   * so no order through a folio lock is ever reported; a cycle through one shows only as the
   * deadlock itself (the scheduler's check, the watchdog).
   */
  readonly lockdep: boolean;
}

/** Per class, by LockClass value: its name in reports and its stats group. */
export const LOCK_CLASSES: readonly ClassInfo[] = [
  { name: 'kvm->lock', stat: LockStat.OTHER, lockdep: true },
  { name: 'kvm->slots_lock', stat: LockStat.SLOTS, lockdep: true },
  { name: 'kvm->srcu', stat: LockStat.SRCU, lockdep: true },
  { name: 'mapping->invalidate_lock', stat: LockStat.INVALIDATE, lockdep: true },
  { name: 'guest_memfd table lock', stat: LockStat.OTHER, lockdep: true },
  { name: 'folio lock', stat: LockStat.FOLIO, lockdep: false },
  { name: 'firmware command lock', stat: LockStat.OTHER, lockdep: true },
  { name: 'kvm->mmu_lock', stat: LockStat.MMU, lockdep: true },
  { name: 'pcp->lock', stat: LockStat.ALLOCATOR, lockdep: true },
  { name: 'zone->lock', stat: LockStat.ALLOCATOR, lockdep: true },
  { name: 'mm->mmap_lock', stat: LockStat.OTHER, lockdep: true },
  { name: 'vcpu->mutex', stat: LockStat.OTHER, lockdep: true },
];

/** How many classes there are: lockdep's class graph is sized by it. */
export const NR_LOCK_CLASSES = LOCK_CLASSES.length;

/** 1 for the classes lockdep orders (read on every acquisition under another lock). */
export const CLASS_LOCKDEP = Uint8Array.from(LOCK_CLASSES, (c) => (c.lockdep ? 1 : 0));

/** The stats group of each class, as a typed array (read on every contended acquisition). */
export const CLASS_STAT = Uint8Array.from(LOCK_CLASSES, (c) => c.stat);
