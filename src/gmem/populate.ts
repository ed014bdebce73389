// virt/kvm/guest_memfd.c kvm_gmem_populate: the pages an SNP LAUNCH_UPDATE measures.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { P } from '../shm/points.js';
import { C } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import type { PostPopulate } from './arch.js';
import type { GmemCtx } from './ctx.js';
import { Bug } from './bugs.js';
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
  // kvm_gmem_populate: lockdep_assert_held(&kvm->slots_lock).
  g.sync.assertHeld(g.kvm.slotsLockWord(vm));
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
        clearPage(g, pfnOf(pfn));
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
    ret = post(vm, gfnOf(gfn), pfnOf(pfn), i);
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
