// virt/kvm/guest_memfd.c, the file's life: create, link, fput and release, bind and unbind,
// and memory failure. fallocate.ts, get_pfn.ts, populate.ts, prepare.ts and invalidate.ts hold
// the rest of the same C file.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { LIMITS, PAGE_SHIFT, PAGE_SIZE, SandboxLimitError, isPageAligned } from '../shm/limits.js';
import { NO_HANDLE, Site } from '../shm/slab.js';
import { LockClass } from '../shm/sync/classes.js';
import type { GmemCtx } from './ctx.js';
import { gmemInitAttributes } from './attributes.js';
import { shouldFailSlab } from './failslab.js';
import { gmemSupportedFlags } from './flags.js';
import { PG_HWPOISON } from './folio.js';
import { filemapLockFolio, folioPut, folioUnlock, truncateRange, unmapHostPtes } from './filemap.js';
import { allGfnsFilter, boundRanges, fileBoundRanges, invalidateBegin, invalidateEnd, withTableLock } from './invalidate.js';

// kvm_gmem_create's `flags & ~valid_flags` (none valid before 6.18) on a u64: any unknown bit,
// bits 32-63 included (which JavaScript's bit operations would drop), is EINVAL; a value no u64
// holds has unknown bits too.
function u64HasUnknownBits(flags: number | bigint, valid: number): boolean {
  if (typeof flags === 'number' && !Number.isInteger(flags)) return true;
  const v = BigInt(flags);
  if (v < 0n || v >= 1n << 64n) return true;
  return (v & ~BigInt(valid)) !== 0n;
}

// __kvm_gmem_create: a new inode with one file owned by `vm`, holding the fd's reference.
// Returns the file's handle or -errno.
export function gmemCreate(g: GmemCtx, vm: number, size: number, flags: number | bigint): number {
  if (u64HasUnknownBits(flags, gmemSupportedFlags(g, vm))) return -Errno.EINVAL;
  if (!(size > 0) || !isPageAligned(size)) return -Errno.EINVAL;
  const pages = size / PAGE_SIZE;
  if (g.version.gmemAttributes) return gmemCreateWithAttributes(g, vm, pages, Number(flags));
  return withTableLock(g, () => {
    const ino = createInode(g, pages, Number(flags));
    const f = g.files.alloc(ino, vm);
    g.inodes.addFile(ino, f);
    return f;
  });
}

/** A new inode (the caller holds the table lock); a limit of the model is a SandboxLimitError. */
function createInode(g: GmemCtx, pages: number, flags: number): number {
  if (g.files.freeSlotCount() === 0)
    throw new SandboxLimitError('guest_memfd', `at most ${LIMITS.MAX_FILES} guest_memfd files may be open at once`);
  const ino = g.inodes.create(pages, g.sync, flags);
  if (typeof ino === 'string') throw new SandboxLimitError('size', ino);
  return ino;
}

// 7.4's __kvm_gmem_create: kvm_gmem_init_inode stores the default attributes under the
// invalidate lock before the file exists (its failure fails the ioctl), then the file.
function gmemCreateWithAttributes(g: GmemCtx, vm: number, pages: number, flags: number): number {
  const ino = withTableLock(g, () => createInode(g, pages, flags));
  const r = gmemInitAttributes(g, ino);
  if (r < 0) {
    withTableLock(g, () => g.inodes.destroy(ino));
    return r;
  }
  return withTableLock(g, () => {
    const f = g.files.alloc(ino, vm);
    if (f === NO_HANDLE) throw new SandboxLimitError('guest_memfd', `at most ${LIMITS.MAX_FILES} guest_memfd files may be open at once`);
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
  // kvm_gmem_release: mutex_lock(&kvm->slots_lock) around all of it (the caller takes it here).
  g.sync.assertHeld(g.kvm.slotsLockWord(g.files.vm(file)));
  const ino = g.files.inode(file);
  const lock = g.inodes.invalidateLockWord(ino);
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  const vm = g.files.vm(file);
  for (const slot of g.files.boundSlots(file)) g.kvm.detachSlot(vm, slot, Site['kvm_gmem_release: WRITE_ONCE(slot->gmem.file, NULL)']);
  // e088c7f86bef (7.4): __kvm_gmem_invalidate_start(f, 0, -1ul, all gfns); before, [0, i_size).
  // No binding reaches past i_size, so both name the same gfns.
  const all = fileBoundRanges(g, file, 0, g.version.allGfnsFilter ? Number.POSITIVE_INFINITY : g.inodes.sizePages(ino));
  const per: Array<[number, number[]]> = all.length > 0 ? [[vm, all]] : [];
  invalidateBegin(g, per, allGfnsFilter(g, ino));
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

// kvm_gmem_bind, and from 7.4 kvm_gmem_prepare_memory_region: `file` resolved from the fd by the
// caller (EBADF / not-gmem EINVAL done there). The file's VM and the range are checked; the
// caller sets slot->gmem.file and pgoff on the slot it builds.
export function gmemBindPrepare(g: GmemCtx, file: number, vm: number, offset: number, npages: number): number {
  if (g.files.vm(file) !== vm) return -Errno.EINVAL;
  const size = g.inodes.sizePages(g.files.inode(file)) * PAGE_SIZE;
  if (offset < 0 || !isPageAligned(offset) || offset + npages * PAGE_SIZE > size) return -Errno.EINVAL;
  return 0;
}

// kvm_gmem_bind's publication (up to 7.0, right after its checks, before the memslot is ready), or
// 7.4's kvm_gmem_commit_memory_region (once it is: 3fe5d2944e5a, 83411f32b8ad): under the
// invalidate lock, an overlap is refused and the range stored into the file's bindings.
export function gmemBindCommit(g: GmemCtx, file: number, slot: number, baseGfn: number, offset: number, npages: number): number {
  const lock = g.inodes.invalidateLockWord(g.files.inode(file));
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  try {
    const start = offset >> PAGE_SHIFT;
    if (g.files.anyBound(file, start, start + npages)) return g.version.bindOnCommit ? -Errno.EEXIST : -Errno.EINVAL;
    if (g.files.freeBindingSlots(file) === 0) {
      throw new SandboxLimitError('guest_memfd', `one guest_memfd file may hold at most ${LIMITS.MAX_BINDINGS_PER_FILE} memslot bindings`);
    }
    // xa_store_range's node allocation: e6ecb88711d9 returns its error (and undoes a partial
    // store); before, it was ignored and the memslot went live without its binding.
    if (shouldFailSlab(g.mem)) return g.version.bindStoreErrorChecked ? -Errno.ENOMEM : 0;
    g.files.addBinding(file, { pgoff: start, npages, slot, baseGfn });
    return 0;
  } finally {
    g.sync.upWrite(lock);
  }
}

// kvm_gmem_unbind(slot) from kvm_free_memslot, under slots_lock: `fileWord` is slot->gmem.file.
export function gmemUnbind(g: GmemCtx, vm: number, slot: number, fileWord: number): void {
  // kvm_free_memslot runs under slots_lock (kvm_set_memory_region: lockdep_assert_held).
  g.sync.assertHeld(g.kvm.slotsLockWord(vm));
  const stale = Atomics.load(g.mem.w, fileWord) - 1;
  // Already released: kvm_gmem_release cleared slot->gmem.file.
  if (stale === NO_HANDLE) return;
  // 1f3359c873db (7.4): live or dying, the bindings change under the invalidate lock, with no
  // file reference (release cannot free the file while the caller holds slots_lock).
  if (g.version.unbindDyingFileLocked) {
    unbindLocked(g, vm, slot, stale);
    return;
  }
  const file = g.files.getFileActive(fileWord);
  if (file === NO_HANDLE) {
    // The file is dying: its release has not run yet and will walk its bindings.
    if (!g.version.unbindDyingFile) return; // before ae431059e75d: the binding stays behind
    // ae431059e75d: without the invalidate lock, while a walk of the inode's files may be reading them.
    g.files.removeBinding(stale, slot);
    g.kvm.detachSlot(vm, slot, Site['kvm_gmem_unbind: slot']);
    return;
  }
  unbindLocked(g, vm, slot, file);
  gmemFput(g, file);
}

// The binding's removal under filemap_invalidate_lock, as __kvm_gmem_unbind does it.
function unbindLocked(g: GmemCtx, vm: number, slot: number, file: number): void {
  const lock = g.inodes.invalidateLockWord(g.files.inode(file));
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  g.files.removeBinding(file, slot);
  g.kvm.detachSlot(vm, slot, Site['kvm_gmem_unbind: slot']);
  g.sync.upWrite(lock);
}

// memory_failure -> me_pagecache_clean -> truncate_error_folio -> kvm_gmem_error_folio: poison
// the folio at `index` and zap its mappings. memory_failure holds the folio lock throughout, so
// the invalidate lock is taken under it: the reverse of PUNCH_HOLE, whose truncate locks folios
// under the invalidate lock (a real ABBA that the kernel's lockdep cannot see: PG_locked has no
// lockdep map). Returns 0, or -ENOENT when no folio is cached there.
export function gmemErrorFolio(g: GmemCtx, file: number, index: number): number {
  const ino = g.files.inode(file);
  if (index < 0 || index >= g.inodes.sizePages(ino)) return -Errno.EINVAL;
  const lock = g.inodes.invalidateLockWord(ino);
  const pfn = filemapLockFolio(g, ino, index);
  if (pfn < 0) return -Errno.ENOENT;
  g.folios.set(pfn, PG_HWPOISON);
  // hwpoison_user_mappings (memory_failure, before error_remove_folio): off the host page tables.
  unmapHostPtes(g, pfn, ino, index);
  g.sync.downRead(lock, LockClass.INVALIDATE);
  const per = boundRanges(g, ino, index, index + 1);
  invalidateBegin(g, per, allGfnsFilter(g, ino));
  invalidateEnd(g, per);
  g.sync.upRead(lock);
  folioUnlock(g, pfn);
  folioPut(g, pfn);
  return 0;
}
