// The page cache operations guest_memfd uses: grab (find or create, locked), folio_put with the
// free path (kvm_gmem_free_folio), truncate, and the host writes that must respect the RMP.

import { Errno } from '../shm/errno.js';
import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { C } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import type { GmemCtx } from './ctx.js';
import { Bug } from './bugs.js';
import { HOST_PATTERN, PG_PUNCH_RACE } from './folio.js';
import { LRU_BATCH } from './lru.js';
import { type Pfn, pfnOf } from '../shm/frames.js';

// folio_lock
export function folioLock(g: GmemCtx, pfn: number): void {
  g.sync.mutexLock(g.folios.lockWord(pfn), LockClass.FOLIO);
}

/** folio_lock on a folio the caller took a reference to: a wait the watchdog or an abort ends drops it. */
function folioLockGotten(g: GmemCtx, pfn: number): void {
  try {
    folioLock(g, pfn);
  } catch (e) {
    folioPut(g, pfn);
    throw e;
  }
}

// folio_unlock
export function folioUnlock(g: GmemCtx, pfn: number): void {
  g.sync.mutexUnlock(g.folios.lockWord(pfn));
}

// folio_put: the last reference frees the folio through kvm_gmem_free_folio.
export function folioPut(g: GmemCtx, pfn: number): void {
  if (g.folios.putTestZero(pfn)) freeFolio(g, pfn);
}

// The last reference is gone: the page goes back to the allocator, painted with the host
// pattern so that stale bytes would be visible to a guest that got it next.
function freeFolio(g: GmemCtx, pfn: number): void {
  hostFill(g, pfnOf(pfn), HOST_PATTERN, 'the free path (kvm_gmem_free_folio)');
  g.folios.markFree(pfn);
  g.alloc.free(pfn);
}

/**
 * Where the host writes a whole page: the report of an RMP fault names the first one that
 * faulted (the free path's paint is the model's own, to make stale data visible).
 */
export const HOST_WRITES = [
  'clear_highpage in kvm_gmem_get_pfn',
  'clear_highpage in kvm_gmem_get_folio',
  'the free path (kvm_gmem_free_folio)',
  'memcpy in sev_gmem_post_populate',
  'the clear in kvm_gmem_fault_user_mapping',
] as const;
export type HostWrite = (typeof HOST_WRITES)[number];

const FAULT_REGION = 'host_rmp_fault';
const FAULT_WORDS = 8;

/** The first host write that took an RMP fault since the reset: where, which page, whose it was. */
export function declareHostRmpFault(lb: LayoutBuilder): void {
  lb.add(FAULT_REGION, FAULT_WORDS, 'gmem/filemap.ts');
}

/** An RMP fault: counted, and the first one recorded with its site and the page's owner. */
function rmpFault(g: GmemCtx, pfn: Pfn, site: HostWrite): void {
  g.stats[C.hostRmpFaults]++;
  const w = g.mem.w;
  const b = regionBase(g.mem, FAULT_REGION);
  if (Atomics.compareExchange(w, b, 0, HOST_WRITES.indexOf(site) + 1) !== 0) return;
  const owner = g.arch.rmpOwner(pfn);
  Atomics.store(w, b + 1, pfn);
  Atomics.store(w, b + 2, g.sync.tid);
  Atomics.store(w, b + 3, owner?.asid ?? 0);
  Atomics.store(w, b + 4, owner?.gfn ?? 0);
  Atomics.store(w, b + 5, owner === null ? 0 : owner.immutable ? 2 : 1);
}

/** The first RMP fault of a host write since the reset, or null. */
export function firstHostRmpFault(
  mem: Mem,
): { site: HostWrite; pfn: number; tid: number; asid: number; gfn: number; assigned: boolean; immutable: boolean } | null {
  const w = mem.w;
  const b = regionBase(mem, FAULT_REGION);
  const site = Atomics.load(w, b);
  if (site === 0) return null;
  const own = Atomics.load(w, b + 5);
  return {
    site: HOST_WRITES[site - 1],
    pfn: w[b + 1],
    tid: w[b + 2],
    asid: w[b + 3],
    gfn: w[b + 4],
    assigned: own !== 0,
    immutable: own === 2,
  };
}

/** A host write of a whole page at `site`; an RMP-assigned page refuses it (counted: a host bug). */
export function hostFill(g: GmemCtx, pfn: Pfn, byte: number, site: HostWrite): boolean {
  if (!g.arch.hostWritable(pfn)) {
    rmpFault(g, pfn, site);
    return false;
  }
  g.mem.fillPage(pfn, byte);
  return true;
}

/** Copies `src` (one page) into pfn as the host at `site`; false on an RMP fault. */
export function hostCopy(g: GmemCtx, pfn: Pfn, src: Uint8Array, site: HostWrite): boolean {
  if (!g.arch.hostWritable(pfn)) {
    rmpFault(g, pfn, site);
    return false;
  }
  g.mem.host.set(src.subarray(0, PAGE_SIZE), pfn * PAGE_SIZE);
  return true;
}

/**
 * filemap_grab_folio (find or create, locked, with a reference for the caller).
 * Returns the pfn, or -ENOMEM when the allocator is empty.
 */
export function filemapGrabFolio(g: GmemCtx, ino: number, index: number): number {
  const w = g.mem.w;
  const slot = g.inodes.slotWord(ino, index);
  for (;;) {
    const v = Atomics.load(w, slot);
    if (v !== 0) {
      const pfn = v - 1;
      // Speculative lookup: the folio may be on its way out; re-check once it is locked.
      if (!g.folios.tryGet(pfn)) continue;
      folioLockGotten(g, pfn);
      if (Atomics.load(w, slot) === v && g.folios.inode(pfn) === ino) return pfn;
      folioUnlock(g, pfn);
      folioPut(g, pfn);
      continue;
    }
    const pfn = g.alloc.alloc();
    if (pfn < 0) return -Errno.ENOMEM;
    // A new folio is locked before its references are published, so that a stale lookup that
    // still knows this pfn from its last life cannot lock it first (__filemap_add_folio).
    if (!g.sync.mutexTryLock(g.folios.lockWord(pfn), LockClass.FOLIO)) throw new Error(`free pfn ${pfn} has its folio lock held`);
    g.folios.initNew(pfn, ino, index, g.inodes.punchCovers(ino, index) ? PG_PUNCH_RACE : 0);
    if (g.inodes.filemapInsert(ino, index, pfn)) {
      // Counted as it enters the page cache (foliosFreed counts it leaving): a page that lost
      // the race to insert is in neither.
      g.stats[C.foliosAllocated]++;
      // filemap_add_folio: the new folio goes on the LRU through this thread's batch.
      folioAddLru(g, pfn);
      return pfn;
    }
    // Lost the race to insert. A stale lookup may hold a reference by now: drop ours with
    // ordinary puts, and the last one frees the page (it was never prepared).
    g.folios.detach(pfn);
    folioUnlock(g, pfn);
    folioPut(g, pfn);
    folioPut(g, pfn);
  }
}

/** unmap_mapping_folio: the host PTEs that map a locked folio go, each with its folio reference. */
export function unmapHostPtes(g: GmemCtx, pfn: number, ino: number, index: number): void {
  const n = g.vmas.unmapFolio(pfn, ino, index);
  if (n === 0) return;
  g.stats[C.hostPtesZapped] += n;
  for (let k = 0; k < n; k++) folioPut(g, pfn);
}

/** filemap_lock_folio without creating: the locked pfn with a reference, or -1 for a hole. */
export function filemapLockFolio(g: GmemCtx, ino: number, index: number): number {
  const w = g.mem.w;
  const slot = g.inodes.slotWord(ino, index);
  for (;;) {
    const v = Atomics.load(w, slot);
    if (v === 0) return -1;
    const pfn = v - 1;
    if (!g.folios.tryGet(pfn)) continue;
    folioLockGotten(g, pfn);
    if (Atomics.load(w, slot) === v && g.folios.inode(pfn) === ino) return pfn;
    folioUnlock(g, pfn);
    folioPut(g, pfn);
  }
}

// truncate_inode_pages_range: removes each cached folio of [start, end) and drops the cache's
// reference; a folio a fault still holds is freed when that fault lets go.
export function truncateRange(g: GmemCtx, ino: number, start: number, end: number): number {
  let removed = 0;
  for (let index = start; index < end; index++) {
    const pfn = filemapLockFolio(g, ino, index);
    if (pfn < 0) continue;
    // truncate_cleanup_folio -> unmap_mapping_folio: host PTEs go before the folio leaves the cache.
    if ((g.bugs & Bug['truncate-skips-host-unmap']) === 0) unmapHostPtes(g, pfn, ino, index);
    g.inodes.filemapDelete(ino, index);
    g.folios.detach(pfn);
    // filemap_free_folio -> kvm_gmem_free_folio: the arch invalidate runs as the folio leaves
    // the page cache, even while a racing fault still holds a reference to it.
    if ((g.bugs & Bug['skip-arch-invalidate-on-free']) === 0) g.arch.invalidate(pfnOf(pfn));
    g.stats[C.foliosFreed]++;
    folioUnlock(g, pfn);
    folioPut(g, pfn); // our lookup reference
    folioPut(g, pfn); // the page cache's reference
    removed++;
  }
  return removed;
}

// folio_add_lru: the folio (on which the caller holds a reference) goes to this thread's batch
// with a reference of its own; a full batch moves to the LRU first (folio_batch_move_lru).
export function folioAddLru(g: GmemCtx, pfn: number): void {
  if (!g.version.setMemoryAttributes2) return;
  const tid = g.sync.tid;
  for (;;) {
    for (let k = 0; k < LRU_BATCH; k++) {
      const word = g.lru.slotWord(tid, k);
      if (Atomics.load(g.mem.w, word) !== 0) continue;
      // The extra reference first (the caller's keeps the count above zero): a drain that
      // empties the slot at once drops it.
      if (!g.folios.tryGet(pfn)) throw new Error(`folio_add_lru: pfn ${pfn} without a reference`);
      if (g.lru.fill(tid, k, pfn)) return;
      folioPut(g, pfn);
    }
    lruAddDrainCpu(g, tid);
  }
}

// lru_add_drain_cpu: the batch of thread `tid` moves to the LRU, dropping its references.
function lruAddDrainCpu(g: GmemCtx, tid: number): void {
  for (let k = 0; k < LRU_BATCH; k++) {
    const pfn = g.lru.take(tid, k);
    if (pfn >= 0) folioPut(g, pfn);
  }
}

// lru_add_drain_all: every thread's batch is emptied (the kernel queues the drain on each CPU and
// waits for it; here the caller empties them, which drops the same references).
export function lruAddDrainAll(g: GmemCtx): void {
  g.stats[C.lruDrains]++;
  for (let t = 0; t < g.lru.maxThreads; t++) lruAddDrainCpu(g, t);
}
