// Host memory at a quiescent point: folio locks and refcounts, free pages hypervisor-owned in the
// RMP, the allocator's free lists, and the inodes' invalidate locks released.

import { PG_FREE } from '../../gmem/folio.js';
import { LIMITS } from '../../shm/limits.js';
import { type Add, Views } from './views.js';

/**
 * Every folio: unlocked; a free one hypervisor-owned with no reference; a cached one held by the
 * filemap, by each host PTE that maps it (6.18's guest_memfd mmap), by each pin of a device, and
 * by a per-CPU LRU batch (7.4 models those), nothing else.
 */
export function auditFolios(v: Views, add: Add): void {
  const w = v.mem.w;
  const mapped = v.vmas.mapCounts(v.folios.nrPfns);
  const batched = v.lru.refCounts(v.folios.nrPfns);
  for (let pfn = 0; pfn < v.folios.nrPfns; pfn++) {
    if (Atomics.load(w, v.folios.lockWord(pfn)) !== 0)
      add({ invariant: 'balance', by: 'auditor', pfn, detail: `folio lock of pfn ${pfn} held at a quiescent point` });
    if (v.folios.test(pfn, PG_FREE)) {
      if (v.rmp.assigned(pfn))
        add({
          invariant: 'hostIsolation',
          by: 'auditor',
          pfn,
          detail: `free pfn ${pfn} is still assigned to ASID ${v.rmp.asid(pfn)} in the RMP`,
        });
      if (v.folios.refcount(pfn) !== 0)
        add({ invariant: 'balance', by: 'auditor', pfn, detail: `free pfn ${pfn} has refcount ${v.folios.refcount(pfn)}` });
    } else if (v.folios.inode(pfn) >= 0 && v.folios.refcount(pfn) !== 1 + mapped[pfn] + v.folios.pincount(pfn) + batched[pfn]) {
      const want = 1 + mapped[pfn] + v.folios.pincount(pfn) + batched[pfn];
      add({
        invariant: 'balance',
        by: 'auditor',
        pfn,
        detail: `cached folio of pfn ${pfn} has refcount ${v.folios.refcount(pfn)} at a quiescent point (expected ${want})`,
      });
    }
  }
}

/**
 * Balance of the free lists at a quiescent point: the zone's list and every thread's pcp list
 * together hold each free pfn exactly once and nothing else, and no pcp list is locked.
 */
export function auditFreeLists(v: Views, add: Add): void {
  const seen = new Uint8Array(v.folios.nrPfns);
  const check = (pfns: Int32Array, where: string): void => {
    for (const pfn of pfns) {
      if (pfn < 0 || pfn >= v.folios.nrPfns)
        add({ invariant: 'balance', by: 'auditor', detail: `${where} holds pfn ${pfn}, which does not exist` });
      else if (seen[pfn]++ !== 0)
        add({ invariant: 'balance', by: 'auditor', pfn, detail: `pfn ${pfn} is on the free lists twice (again in ${where})` });
      else if (!v.folios.test(pfn, PG_FREE))
        add({ invariant: 'balance', by: 'auditor', pfn, detail: `${where} holds pfn ${pfn}, which is in use` });
    }
  };
  check(v.alloc.freePfns(), 'the zone free list');
  for (let tid = 0; tid < LIMITS.MAX_THREADS; tid++) {
    const pcp = v.alloc.pcpList(tid);
    if (pcp.locked) add({ invariant: 'balance', by: 'auditor', detail: `the pcp list of thread ${tid} is locked at a quiescent point` });
    check(pcp.pfns, `the pcp list of thread ${tid}`);
  }
  let lost = 0;
  for (let pfn = 0; pfn < v.folios.nrPfns; pfn++) if (seen[pfn] === 0 && v.folios.test(pfn, PG_FREE)) lost++;
  if (lost > 0) add({ invariant: 'balance', by: 'auditor', detail: `${lost} free pfn(s) on no free list (lost to the allocator)` });
}

/** No inode's invalidate lock is held. */
export function auditInodeLocks(v: Views, add: Add): void {
  for (let ino = 0; ino < LIMITS.MAX_INODES; ino++) {
    if (!v.inodes.live(ino)) continue;
    if (Atomics.load(v.mem.w, v.inodes.invalidateLockWord(ino)) !== 0)
      add({ invariant: 'balance', by: 'auditor', detail: `invalidate_lock of inode ${ino} held at a quiescent point` });
  }
}
