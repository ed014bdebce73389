// virt/kvm/guest_memfd.c: create, link, release, fallocate, bind/unbind, get_pfn, populate.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { LIMITS, PAGE_SHIFT, PAGE_SIZE, SandboxLimitError, isPageAligned } from '../shm/limits.js';
import { P } from '../shm/points.js';
import { NO_HANDLE, Site } from '../shm/slab.js';
import { C, LockClass } from '../shm/stats.js';
import type { PostPopulate } from './arch.js';
import type { GmemCtx } from './ctx.js';
import { Bug } from './bugs.js';
import { PG_HWPOISON, PG_PUNCH_RACE, PG_UPTODATE } from './folio.js';
import { filemapGrabFolio, filemapLockFolio, folioPut, folioUnlock, hostFill, truncateRange } from './filemap.js';
import { Policy } from './policy.js';

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_NO_HIDE_STALE = 0x04;
export const FALLOC_FL_COLLAPSE_RANGE = 0x08;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const FALLOC_FL_INSERT_RANGE = 0x20;
export const FALLOC_FL_UNSHARE_RANGE = 0x40;
/** fallocate(2) mode bits by name, for the library and scenarios. */
export const FALLOC_MODE_NAMES = {
  keep_size: FALLOC_FL_KEEP_SIZE,
  punch_hole: FALLOC_FL_PUNCH_HOLE,
  no_hide_stale: FALLOC_FL_NO_HIDE_STALE,
  collapse_range: FALLOC_FL_COLLAPSE_RANGE,
  zero_range: FALLOC_FL_ZERO_RANGE,
  insert_range: FALLOC_FL_INSERT_RANGE,
  unshare_range: FALLOC_FL_UNSHARE_RANGE,
} as const;
export type FallocModeName = keyof typeof FALLOC_MODE_NAMES;
/** FALLOC_FL_SUPPORTED_MASK (include/linux/falloc.h, 6.11): NO_HIDE_STALE is not in it. */
const FALLOC_FL_SUPPORTED_MASK =
  FALLOC_FL_KEEP_SIZE |
  FALLOC_FL_PUNCH_HOLE |
  FALLOC_FL_COLLAPSE_RANGE |
  FALLOC_FL_ZERO_RANGE |
  FALLOC_FL_INSERT_RANGE |
  FALLOC_FL_UNSHARE_RANGE;
/** KVM_CREATE_GUEST_MEMFD accepts no flags in 6.11. */
export const GUEST_MEMFD_VALID_FLAGS = 0;

function withTableLock<T>(g: GmemCtx, fn: () => T): T {
  g.sync.mutexLock(g.inodes.tableLockWord, LockClass.OTHER);
  try {
    return fn();
  } finally {
    g.sync.mutexUnlock(g.inodes.tableLockWord);
  }
}

// kvm_gmem_create's `flags & ~valid_flags` on a u64: any unknown bit, bits 32-63 included (which
// JavaScript's bit operations would drop), is EINVAL; a value no u64 holds has unknown bits too.
function u64HasUnknownBits(flags: number | bigint, valid: number): boolean {
  if (typeof flags === 'number' && !Number.isInteger(flags)) return true;
  const v = BigInt(flags);
  if (v < 0n || v >= 1n << 64n) return true;
  return (v & ~BigInt(valid)) !== 0n;
}

// __kvm_gmem_create: a new inode with one file owned by `vm`, holding the fd's reference.
// Returns the file's handle or -errno.
export function gmemCreate(g: GmemCtx, vm: number, size: number, flags: number | bigint): number {
  if (u64HasUnknownBits(flags, GUEST_MEMFD_VALID_FLAGS)) return -Errno.EINVAL;
  if (!(size > 0) || !isPageAligned(size)) return -Errno.EINVAL;
  const pages = size / PAGE_SIZE;
  return withTableLock(g, () => {
    if (g.files.freeSlotCount() === 0)
      throw new SandboxLimitError('guest_memfd', `at most ${LIMITS.MAX_FILES} guest_memfd files may be open at once`);
    const ino = g.inodes.create(pages);
    if (typeof ino === 'string') throw new SandboxLimitError('size', ino);
    const f = g.files.alloc(ino, vm);
    g.inodes.addFile(ino, f);
    return f;
  });
}

// KVM_LINK_GUEST_MEMFD (never merged; an experiment here): a second file on the same inode for
// another VM, put first in the inode's list as list_add does.
export function gmemLink(g: GmemCtx, file: number, vm: number): number {
  if (!g.files.isOpen(file)) return -Errno.EBADF;
  // The new file pins the inode; a file reference is not needed for that (the caller's fd holds one).
  return withTableLock(g, () => {
    const ino = g.files.inode(file);
    if (g.inodes.nfiles(ino) >= LIMITS.MAX_FILES_PER_INODE) {
      throw new SandboxLimitError('link', `at most ${LIMITS.MAX_FILES_PER_INODE} files may share one guest_memfd inode`);
    }
    if (g.files.freeSlotCount() === 0)
      throw new SandboxLimitError('link', `at most ${LIMITS.MAX_FILES} guest_memfd files may be open at once`);
    const f = g.files.alloc(ino, vm);
    g.inodes.addFile(ino, f);
    return f;
  });
}

/**
 * kvm_gmem_invalidate_begin's walk of one file's bindings over index range [start, end): the
 * gfn ranges, read through each binding's slot pointer (a freed slot is reported).
 */
function fileBoundRanges(g: GmemCtx, file: number, start: number, end: number): number[] {
  const vm = g.files.vm(file);
  const ranges: number[] = [];
  for (const b of g.files.boundOverlaps(file, start, end)) {
    // xa_for_each_range over gmem->bindings, then slot->base_gfn through the pointer it found:
    // only the invalidate lock keeps an unbind (and the slot's free) out of this window.
    g.sync.point(P['invalidate.binding_walk']);
    g.kvm.slotLive(vm, b.slot, Site['kvm_gmem_invalidate_begin: slot->base_gfn']);
    ranges.push(b.gs, b.ge);
  }
  return ranges;
}

/** The index range's bound gfn ranges, per file of the inode: [vm, ranges][] */
function boundRanges(g: GmemCtx, ino: number, start: number, end: number): Array<[number, number[]]> {
  const out: Array<[number, number[]]> = [];
  const n = g.inodes.nfiles(ino);
  for (let k = 0; k < n; k++) {
    const f = g.inodes.file(ino, k);
    const ranges = fileBoundRanges(g, f, start, end);
    if (ranges.length > 0) out.push([g.files.vm(f), ranges]);
  }
  return out;
}

// kvm_gmem_invalidate_begin for one file's bindings over [start, end).
function invalidateBegin(g: GmemCtx, per: Array<[number, number[]]>): void {
  for (const [vm, ranges] of per) g.kvm.invalidateBegin(vm, ranges);
}

// kvm_gmem_invalidate_end
function invalidateEnd(g: GmemCtx, per: Array<[number, number[]]>): void {
  for (const [vm] of per) g.kvm.invalidateEnd(vm);
}

// fput: drops a reference. The last one leaves the file dying; its release runs as this
// thread's task work (gmemTakeDeferredFput), when it leaves the kernel.
export function gmemFput(g: GmemCtx, file: number): void {
  if (g.files.put(file)) g.deferredFput.push(file);
}

/** The files whose release this thread owes, in the order their last references went. */
export function gmemTakeDeferredFput(g: GmemCtx): number[] {
  return g.deferredFput.splice(0);
}

// kvm_gmem_release (the file's last fput), called with the VM's slots_lock held by the caller.
// The inode, and its folios, live on until its last file is gone.
export function gmemRelease(g: GmemCtx, file: number): void {
  if (!g.files.dying(file)) throw new Error(`kvm_gmem_release of gmem file ${file & 255} that is not dying`);
  const ino = g.files.inode(file);
  const lock = g.inodes.invalidateLockWord(ino);
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  const vm = g.files.vm(file);
  for (const slot of g.files.boundSlots(file)) g.kvm.detachSlot(vm, slot, Site['kvm_gmem_release: WRITE_ONCE(slot->gmem.file, NULL)']);
  const all = fileBoundRanges(g, file, 0, g.inodes.sizePages(ino));
  const per: Array<[number, number[]]> = all.length > 0 ? [[vm, all]] : [];
  invalidateBegin(g, per);
  invalidateEnd(g, per);
  const left = withTableLock(g, () => {
    const n = g.inodes.removeFile(ino, file);
    g.files.free(file);
    return n;
  });
  g.sync.upWrite(lock);
  if (left === 0) evictInode(g, ino);
}

// kvm_gmem_evict_inode / truncate_inode_pages_final: the last file is gone.
function evictInode(g: GmemCtx, ino: number): void {
  truncateRange(g, ino, 0, g.inodes.sizePages(ino));
  withTableLock(g, () => g.inodes.destroy(ino));
}

// vfs_fallocate (fs/open.c, 6.11): the VFS's checks, in its order, before the file's own. (The
// rework in 57413d8e172c returns EOPNOTSUPP for KEEP_SIZE with COLLAPSE/INSERT_RANGE.)
function vfsFallocateChecks(mode: number, offset: number, len: number): number {
  if (!(offset >= 0) || !(len > 0)) return -Errno.EINVAL;
  if (mode & ~FALLOC_FL_SUPPORTED_MASK) return -Errno.EOPNOTSUPP;
  // Punch hole and zero range are mutually exclusive; punch hole must have keep size set.
  if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) === (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) return -Errno.EOPNOTSUPP;
  if (mode & FALLOC_FL_PUNCH_HOLE && !(mode & FALLOC_FL_KEEP_SIZE)) return -Errno.EOPNOTSUPP;
  // Collapse and insert range only exclusively; unshare range only with allocate mode.
  if (mode & FALLOC_FL_COLLAPSE_RANGE && mode & ~FALLOC_FL_COLLAPSE_RANGE) return -Errno.EINVAL;
  if (mode & FALLOC_FL_INSERT_RANGE && mode & ~FALLOC_FL_INSERT_RANGE) return -Errno.EINVAL;
  if (mode & FALLOC_FL_UNSHARE_RANGE && mode & ~(FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE)) return -Errno.EINVAL;
  return 0;
}

// kvm_gmem_fallocate
export function gmemFallocate(g: GmemCtx, file: number, mode: number, offset: number, len: number): number {
  const vr = vfsFallocateChecks(mode, offset, len);
  if (vr < 0) return vr;
  if (!(mode & FALLOC_FL_KEEP_SIZE)) return -Errno.EOPNOTSUPP;
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) return -Errno.EOPNOTSUPP;
  if (!isPageAligned(offset) || !isPageAligned(len)) return -Errno.EINVAL;
  if (!g.files.valid(file)) throw new Error(`fallocate on gmem file ${file & 255} that was released`);
  const ino = g.files.inode(file);
  return mode & FALLOC_FL_PUNCH_HOLE ? gmemPunchHole(g, ino, offset, len) : gmemAllocate(g, ino, offset, len);
}

// kvm_gmem_allocate: under the invalidate lock shared; a signal stops it with EINTR, keeping
// what was done.
function gmemAllocate(g: GmemCtx, ino: number, offset: number, len: number): number {
  const size = g.inodes.sizePages(ino) * PAGE_SIZE;
  if (offset + len > size) return -Errno.EINVAL;
  const lock = g.inodes.invalidateLockWord(ino);
  g.sync.downRead(lock, LockClass.INVALIDATE);
  let r = 0;
  const end = (offset + len) >> PAGE_SHIFT;
  for (let index = offset >> PAGE_SHIFT; index < end; index++) {
    if (g.sync.signalPending()) {
      r = -Errno.EINTR;
      break;
    }
    const pfn = filemapGrabFolio(g, ino, index);
    if (pfn < 0) {
      r = pfn;
      break;
    }
    g.sync.point(P['fallocate.after_grab']);
    if (g.policy === Policy.ON_ALLOCATE) {
      // 6.10: kvm_gmem_get_folio(inode, index, prepare=true)
      const pr = prepareFolioAllVms(g, ino, index, pfn, -1);
      if (pr < 0) {
        folioUnlock(g, pfn);
        folioPut(g, pfn);
        r = pr;
        break;
      }
    }
    folioUnlock(g, pfn);
    folioPut(g, pfn);
  }
  g.sync.upRead(lock);
  g.stats[C.fallocates]++;
  return r;
}

// kvm_gmem_punch_hole
function gmemPunchHole(g: GmemCtx, ino: number, offset: number, len: number): number {
  const lock = g.inodes.invalidateLockWord(ino);
  const size = g.inodes.sizePages(ino);
  const start = Math.min(offset >> PAGE_SHIFT, size);
  const end = Math.min((offset + len) >> PAGE_SHIFT, size);
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  const per = boundRanges(g, ino, start, end);
  g.inodes.punchBegin(ino, start, end);
  if (g.bugs & Bug['punch-frees-before-zap']) truncateRange(g, ino, start, end);
  invalidateBegin(g, per);
  g.sync.point(P['punch_hole.after_invalidate_begin']);
  if (g.bugs & Bug['invalidate-end-before-truncate']) invalidateEnd(g, per);
  if ((g.bugs & Bug['punch-frees-before-zap']) === 0) truncateRange(g, ino, start, end);
  g.sync.point(P['punch_hole.after_truncate']);
  if ((g.bugs & Bug['invalidate-end-before-truncate']) === 0) invalidateEnd(g, per);
  g.inodes.punchEnd(ino);
  // A fault that ran between truncate and invalidate end left a folio behind: allowed, counted.
  for (let index = start; index < end; index++) {
    const pfn = g.inodes.peek(ino, index);
    if (pfn >= 0 && g.folios.test(pfn, PG_PUNCH_RACE)) {
      g.folios.clear(pfn, PG_PUNCH_RACE);
      g.stats[C.punchHoleLeftovers]++;
    }
  }
  g.sync.upWrite(lock);
  g.stats[C.punchHoles]++;
  return 0;
}

// kvm_gmem_bind: `file` resolved from the fd by the caller (EBADF / not-gmem EINVAL done there);
// `slot` is the new memslot's handle. The caller then sets slot->gmem.file and publishes it.
export function gmemBind(g: GmemCtx, file: number, vm: number, slot: number, baseGfn: number, offset: number, npages: number): number {
  if (g.files.vm(file) !== vm) return -Errno.EINVAL;
  const ino = g.files.inode(file);
  const size = g.inodes.sizePages(ino) * PAGE_SIZE;
  if (offset < 0 || !isPageAligned(offset) || offset + npages * PAGE_SIZE > size) return -Errno.EINVAL;
  const lock = g.inodes.invalidateLockWord(ino);
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  try {
    const start = offset >> PAGE_SHIFT;
    if (g.files.anyBound(file, start, start + npages)) return -Errno.EINVAL;
    if (g.files.freeBindingSlots(file) === 0) {
      throw new SandboxLimitError('guest_memfd', `one guest_memfd file may hold at most ${LIMITS.MAX_BINDINGS_PER_FILE} memslot bindings`);
    }
    g.files.addBinding(file, { pgoff: start, npages, slot, baseGfn });
    return 0;
  } finally {
    g.sync.upWrite(lock);
  }
}

// kvm_gmem_unbind(slot) from kvm_free_memslot, under slots_lock: `fileWord` is slot->gmem.file.
export function gmemUnbind(g: GmemCtx, vm: number, slot: number, fileWord: number): void {
  const stale = Atomics.load(g.mem.w, fileWord) - 1;
  // Already released: kvm_gmem_release cleared slot->gmem.file.
  if (stale === NO_HANDLE) return;
  const file = g.files.getFileActive(fileWord);
  if (file === NO_HANDLE) {
    // The file is dying: its release has not run yet and will walk its bindings.
    if (!g.version.unbindDyingFile) return; // before ae431059e75d: the binding stays behind
    g.files.removeBinding(stale, slot);
    g.kvm.detachSlot(vm, slot, Site['kvm_gmem_unbind: slot']);
    return;
  }
  const lock = g.inodes.invalidateLockWord(g.files.inode(file));
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  g.files.removeBinding(file, slot);
  g.kvm.detachSlot(vm, slot, Site['kvm_gmem_unbind: slot']);
  g.sync.upWrite(lock);
  gmemFput(g, file);
}

/** Clears a page as the host (clear_highpage); refused, and counted, if the RMP forbids it. */
function clearPage(g: GmemCtx, pfn: number): void {
  g.sync.point(P['get_pfn.before_clear']);
  if (g.bugs & Bug['prepare-skips-clear']) return;
  hostFill(g, pfn, 0);
  g.stats[C.clears]++;
}

/** One arch prepare call for `vm` at `gfn` (counted only where the arch needs it); `otherVm`: made by another VM's fault. */
function archPrepare(g: GmemCtx, vm: number, gfn: number, pfn: number, otherVm = false): number {
  if (!g.arch.prepareNeeded(vm)) return 0;
  g.stats[C.archPrepareCalls]++;
  if (otherVm) g.stats[C.archPrepareCallsOtherVm]++;
  return g.arch.prepare(vm, gfn, pfn);
}

// kvm_gmem_prepare_folio as of 6.10 and b85524314a: the arch hook runs for every VM with a
// binding at `index`, in the inode's file list order (newest file first). `faulting` is the VM
// whose fault asked (-1 for fallocate): the calls for the others are what 6dd761d92f66 removed.
function archPrepareAllVms(g: GmemCtx, ino: number, index: number, pfn: number, faulting: number): number {
  const n = g.inodes.nfiles(ino);
  for (let k = 0; k < n; k++) {
    const f = g.inodes.file(ino, k);
    const b = g.files.bindingAt(f, index);
    if (b < 0) continue;
    const vm = g.files.vm(f);
    g.kvm.slotLive(vm, g.files.bindingSlot(f, b), Site['kvm_gmem_prepare_folio: slot->base_gfn']);
    const r = archPrepare(g, vm, g.files.bindingGfn(f, b, index), pfn, faulting >= 0 && vm !== faulting);
    if (r < 0) return r;
  }
  return 0;
}

// 6.10 kvm_gmem_get_folio(prepare=true): clear if not up to date, then the arch hook every time.
function prepareFolioAllVms(g: GmemCtx, ino: number, index: number, pfn: number, faulting: number): number {
  if (!g.folios.test(pfn, PG_UPTODATE)) {
    clearPage(g, pfn);
    g.folios.set(pfn, PG_UPTODATE);
    g.stats[C.prepares]++;
  }
  return archPrepareAllVms(g, ino, index, pfn, faulting);
}

// __kvm_gmem_get_pfn: the folio at `index` of `file` (on which the caller holds a reference),
// looked up through memslot `slot` of `vm` whose slot->gmem.file is the word `fileWord`; locked
// and with a reference, not prepared. Returns the pfn, or -errno.
function gmemGetFolio(g: GmemCtx, file: number, fileWord: number, slot: number, vm: number, index: number): number {
  // file != slot->gmem.file: released since the caller took its reference.
  if (Atomics.load(g.mem.w, fileWord) - 1 !== file) return -Errno.EFAULT;
  if (g.files.vm(file) !== vm) throw new Error(`memslot of vm ${vm} bound to gmem file ${file & 255} of vm ${g.files.vm(file)}`);
  const b = g.files.bindingAt(file, index);
  if (b < 0 || g.files.bindingSlot(file, b) !== slot) return -Errno.EIO;
  const pfn = filemapGrabFolio(g, g.files.inode(file), index);
  if (pfn < 0) return pfn;
  g.sync.point(P['get_pfn.after_grab']);
  if (g.folios.test(pfn, PG_HWPOISON)) {
    folioUnlock(g, pfn);
    folioPut(g, pfn);
    return -Errno.EHWPOISON;
  }
  return pfn;
}

// kvm_gmem_get_pfn: the folio backing `index` of slot->gmem.file (the word `fileWord`) for a
// fault on `gfn` through memslot `slot`, prepared per version. The file is pinned with
// get_file_active for the call: a file already dying gives EFAULT. Returns the pfn holding one
// reference for the caller, or -errno.
export function gmemGetPfn(g: GmemCtx, fileWord: number, slot: number, vm: number, gfn: number, index: number): number {
  return withActiveFile(g, fileWord, (file) => {
    g.sync.point(P['get_pfn.after_get_file']);
    return gmemGetPfnFile(g, file, fileWord, slot, vm, gfn, index);
  });
}

/** kvm_gmem_get_file ... fput around `fn`: -EFAULT if slot->gmem.file is gone or dying. */
function withActiveFile(g: GmemCtx, fileWord: number, fn: (file: number) => number): number {
  const file = g.files.getFileActive(fileWord);
  if (file === NO_HANDLE) return -Errno.EFAULT;
  try {
    return fn(file);
  } finally {
    gmemFput(g, file);
  }
}

function gmemGetPfnFile(g: GmemCtx, file: number, fileWord: number, slot: number, vm: number, gfn: number, index: number): number {
  const pfn = gmemGetFolio(g, file, fileWord, slot, vm, index);
  if (pfn < 0) return pfn;
  const ino = g.files.inode(file);
  let r = 0;
  g.sync.point(P['get_pfn.before_prepare']);
  // The planted bug: the folio lock no longer covers the prepare.
  const unlocked = (g.bugs & Bug['get-pfn-unlocked-prepare']) !== 0;
  if (unlocked) folioUnlock(g, pfn);
  switch (g.policy) {
    case Policy.ON_ALLOCATE:
      r = prepareFolioAllVms(g, ino, index, pfn, vm);
      break;
    case Policy.ON_FAULT:
      if (!g.folios.test(pfn, PG_UPTODATE)) {
        clearPage(g, pfn);
        r = archPrepareAllVms(g, ino, index, pfn, vm);
        if (r === 0) markPrepared(g, pfn);
      }
      break;
    case Policy.ON_FAULT_OWN_VM:
      if (!g.folios.test(pfn, PG_UPTODATE)) {
        clearPage(g, pfn);
        r = archPrepare(g, vm, gfn, pfn);
        if (r === 0) markPrepared(g, pfn);
      }
      break;
  }
  if (!unlocked) folioUnlock(g, pfn);
  if (r < 0) {
    folioPut(g, pfn);
    return r;
  }
  return pfn;
}

// kvm_gmem_mark_prepared
function markPrepared(g: GmemCtx, pfn: number): void {
  g.folios.set(pfn, PG_UPTODATE);
  g.stats[C.prepares]++;
}

/** The memslot facts populate needs, looked up by KVM under slots_lock. */
export interface PopulateSlot {
  /** The word holding slot->gmem.file. */
  fileWord: number;
  slot: number;
  baseGfn: number;
  npages: number;
  pgoff: number;
}

// kvm_gmem_populate: the caller holds slots_lock and has checked the slot can be private.
// Returns the pages done, or -errno if none was.
export function gmemPopulate(
  g: GmemCtx,
  vm: number,
  s: PopulateSlot,
  startGfn: number,
  npages: number,
  isPrivate: (gfn: number) => boolean,
  post: PostPopulate,
): number {
  if (npages < 0) return -Errno.EINVAL;
  return withActiveFile(g, s.fileWord, (file) => populateFile(g, vm, file, s, startGfn, npages, isPrivate, post));
}

function populateFile(
  g: GmemCtx,
  vm: number,
  file: number,
  s: PopulateSlot,
  startGfn: number,
  npages: number,
  isPrivate: (gfn: number) => boolean,
  post: PostPopulate,
): number {
  const ino = g.files.inode(file);
  const lock = g.inodes.invalidateLockWord(ino);
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  npages = Math.min(npages, s.npages - (startGfn - s.baseGfn));
  let ret = 0;
  let i = 0;
  for (; i < npages; i++) {
    if (g.sync.signalPending()) {
      ret = -Errno.EINTR;
      break;
    }
    const gfn = startGfn + i;
    const pfn = gmemGetFolio(g, file, s.fileWord, s.slot, vm, gfn - s.baseGfn + s.pgoff);
    if (pfn < 0) {
      ret = pfn;
      break;
    }
    if (g.policy === Policy.ON_ALLOCATE) {
      // 6.11-rc1: kvm_gmem_get_folio(prepare=false) still clears a new folio and marks it up to date.
      if (!g.folios.test(pfn, PG_UPTODATE)) {
        clearPage(g, pfn);
        g.folios.set(pfn, PG_UPTODATE);
      }
    } else if (g.version.populateRefusesUptodate && g.folios.test(pfn, PG_UPTODATE) && (g.bugs & Bug['populate-no-uptodate-check']) === 0) {
      // de80252414f3; before it the folio reaches the arch hook, which refuses an assigned page.
      folioUnlock(g, pfn);
      folioPut(g, pfn);
      ret = -Errno.EEXIST;
      break;
    }
    folioUnlock(g, pfn);
    // e4ee54479273; before it only the arch hook checks (SNP's does).
    if (g.version.populatePrivateOnly && !isPrivate(gfn)) {
      folioPut(g, pfn);
      ret = -Errno.EINVAL;
      break;
    }
    g.sync.point(P['populate.before_post_populate']);
    ret = post(vm, gfn, pfn, i);
    if (ret === 0) {
      g.folios.set(pfn, PG_UPTODATE);
      g.stats[C.populatedPages]++;
    }
    folioPut(g, pfn);
    if (ret < 0) break;
  }
  g.sync.upWrite(lock);
  return ret < 0 && i === 0 ? ret : i;
}

// memory_failure -> kvm_gmem_error_folio: poison the folio at `index` and zap its mappings.
// Returns 0, or -ENOENT when no folio is cached there.
export function gmemErrorFolio(g: GmemCtx, file: number, index: number): number {
  const ino = g.files.inode(file);
  if (index < 0 || index >= g.inodes.sizePages(ino)) return -Errno.EINVAL;
  const lock = g.inodes.invalidateLockWord(ino);
  const pfn = filemapLockFolio(g, ino, index);
  if (pfn < 0) return -Errno.ENOENT;
  g.folios.set(pfn, PG_HWPOISON);
  folioUnlock(g, pfn);
  folioPut(g, pfn);
  g.sync.downRead(lock, LockClass.INVALIDATE);
  const per = boundRanges(g, ino, index, index + 1);
  invalidateBegin(g, per);
  invalidateEnd(g, per);
  g.sync.upRead(lock);
  return 0;
}
