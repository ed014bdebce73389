// virt/kvm/guest_memfd.c kvm_gmem_populate: the pages an SNP LAUNCH_UPDATE measures. Up to 6.19
// one invalidate-lock section covers the whole range; from 7.0 (2a62345b3052) each page is its
// own section, entered after the source page is pinned.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { P } from '../shm/points.js';
import { C } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import type { PostPopulate } from './arch.js';
import type { GmemCtx } from './ctx.js';
import { PG_UPTODATE } from './folio.js';
import { folioPut, folioUnlock } from './filemap.js';
import { Policy } from './policy.js';
import { gmemGetFolio, withActiveFile } from './get_pfn.js';
import { clearPage } from './prepare.js';
import { gfnOf, pfnOf } from '../shm/frames.js';

/** The memslot facts populate needs, looked up by KVM under slots_lock. */
export interface PopulateSlot {
  /** The word holding slot->gmem.file. */
  fileWord: number;
  slot: number;
  baseGfn: number;
  npages: number;
  pgoff: number;
}

/** What one LAUNCH_UPDATE hands kvm_gmem_populate: the private check, the callback, the source. */
export interface PopulateCall {
  isPrivate: (gfn: number) => boolean;
  post: PostPopulate;
  /**
   * 7.0's get_user_pages_fast of source page `i`, before the invalidate lock: 0 or -errno
   * (EFAULT for an unmapped page). Null for a ZERO page type (no source).
   */
  pinSource: ((i: number) => number) | null;
}

// kvm_gmem_populate: the caller holds slots_lock and has checked the slot can be private.
// Returns the pages done, or -errno if none was.
export function gmemPopulate(g: GmemCtx, vm: number, s: PopulateSlot, startGfn: number, npages: number, c: PopulateCall): number {
  // kvm_gmem_populate: lockdep_assert_held(&kvm->slots_lock).
  g.sync.assertHeld(g.kvm.slotsLockWord(vm));
  if (npages < 0) return -Errno.EINVAL;
  return withActiveFile(g, s.fileWord, (file) => {
    const n = Math.min(npages, s.npages - (startGfn - s.baseGfn));
    return g.version.populatePerPage ? populatePageByPage(g, vm, file, s, startGfn, n, c) : populateRange(g, vm, file, s, startGfn, n, c);
  });
}

// 6.11..6.19: filemap_invalidate_lock across the loop.
function populateRange(g: GmemCtx, vm: number, file: number, s: PopulateSlot, startGfn: number, npages: number, c: PopulateCall): number {
  const lock = g.inodes.invalidateLockWord(g.files.inode(file));
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  let ret = 0;
  let i = 0;
  for (; i < npages; i++) {
    if (g.sync.signalPending()) {
      ret = -Errno.EINTR;
      break;
    }
    ret = populateOne(g, vm, file, s, startGfn + i, i, c);
    if (ret < 0) break;
  }
  g.sync.upWrite(lock);
  return ret < 0 && i === 0 ? ret : i;
}

// 7.0 kvm_gmem_populate and __kvm_gmem_populate: pin, then lock for this page only.
function populatePageByPage(
  g: GmemCtx,
  vm: number,
  file: number,
  s: PopulateSlot,
  startGfn: number,
  npages: number,
  c: PopulateCall,
): number {
  const lock = g.inodes.invalidateLockWord(g.files.inode(file));
  let ret = 0;
  let i = 0;
  for (; i < npages; i++) {
    if (g.sync.signalPending()) {
      ret = -Errno.EINTR;
      break;
    }
    if (c.pinSource !== null) {
      ret = c.pinSource(i);
      if (ret < 0) break;
      g.sync.point(P['populate.after_pin_source']);
    }
    g.sync.downWrite(lock, LockClass.INVALIDATE);
    ret = populateOne(g, vm, file, s, startGfn + i, i, c);
    g.sync.upWrite(lock);
    if (ret < 0) break;
  }
  return ret < 0 && i === 0 ? ret : i;
}

// One gfn, under the invalidate lock: the folio (locked only to look it up), the private
// check, the callback, and the folio marked up to date on success.
function populateOne(g: GmemCtx, vm: number, file: number, s: PopulateSlot, gfn: number, i: number, c: PopulateCall): number {
  const pfn = gmemGetFolio(g, file, s.fileWord, s.slot, vm, gfn - s.baseGfn + s.pgoff);
  if (pfn < 0) return pfn;
  if (g.policy === Policy.ON_ALLOCATE) {
    // 6.11-rc1: kvm_gmem_get_folio(prepare=false) still clears a new folio and marks it up to date.
    if (!g.folios.test(pfn, PG_UPTODATE)) {
      clearPage(g, pfnOf(pfn), 'clear_highpage in kvm_gmem_get_folio');
      g.folios.set(pfn, PG_UPTODATE);
    }
  } else if (g.version.populateRefusesUptodate && g.folios.test(pfn, PG_UPTODATE)) {
    // de80252414f3 (removed by 8622ef05709f); before it the folio reaches the arch hook, which
    // refuses an assigned page.
    folioUnlock(g, pfn);
    folioPut(g, pfn);
    return -Errno.EEXIST;
  }
  folioUnlock(g, pfn);
  // e4ee54479273; before it only the arch hook checks (SNP's does).
  if (g.version.populatePrivateOnly && !c.isPrivate(gfn)) {
    folioPut(g, pfn);
    return -Errno.EINVAL;
  }
  g.sync.point(P['populate.before_post_populate']);
  const ret = c.post(vm, gfnOf(gfn), pfnOf(pfn), i);
  if (ret === 0) {
    g.folios.set(pfn, PG_UPTODATE);
    g.stats[C.populatedPages]++;
  }
  folioPut(g, pfn);
  return ret;
}
