// virt/kvm/guest_memfd.c: __kvm_gmem_get_pfn and kvm_gmem_get_pfn, the fault path's way into the
// file: the folio at an index, looked up through a memslot, prepared per version.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { P } from '../shm/points.js';
import { LockClass } from '../shm/sync/classes.js';
import { NO_HANDLE } from '../shm/slab.js';
import { C } from '../shm/stats.js';
import type { GmemCtx } from './ctx.js';
import { Bug } from './bugs.js';
import { PG_HWPOISON, PG_UPTODATE } from './folio.js';
import { filemapGrabFolio, folioPut, folioUnlock } from './filemap.js';
import { Policy } from './policy.js';
import { gmemFput } from './guest_memfd.js';
import { gmemIsPrivateMem } from './attributes.js';
import { archPrepare, archPrepareAllVms, clearPage, prepareFolioAllVms } from './prepare.js';
import { type Gfn, type PgOff, pfnOf } from '../shm/frames.js';

// __kvm_gmem_get_pfn: the folio at `index` of `file` (on which the caller holds a reference),
// looked up through memslot `slot` of `vm` whose slot->gmem.file is the word `fileWord`; locked
// and with a reference, not prepared; from 7.4 cleared if it was not up to date (cb0544296a33),
// for get_pfn and populate alike. Returns the pfn, or -errno.
export function gmemGetFolio(g: GmemCtx, file: number, fileWord: number, slot: number, vm: number, index: number): number {
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
  if (g.version.prepareOnlyPrivate && !g.folios.test(pfn, PG_UPTODATE)) {
    clearPage(g, pfnOf(pfn));
    markPrepared(g, pfn);
  }
  return pfn;
}

// kvm_gmem_get_pfn: the folio backing `index` of slot->gmem.file (the word `fileWord`) for a
// fault on `gfn` through memslot `slot`, prepared per version. The file is pinned with
// get_file_active for the call: a file already dying gives EFAULT. Returns the pfn holding one
// reference for the caller, or -errno.
export function gmemGetPfn(g: GmemCtx, fileWord: number, slot: number, vm: number, gfn: Gfn, index: PgOff): number {
  return withActiveFile(g, fileWord, (file) => {
    g.sync.point(P['get_pfn.after_get_file']);
    if (!g.version.gmemAttributes) return gmemGetPfnFile(g, file, fileWord, slot, vm, gfn, index);
    // 1ae5be958ff7 (7.4): the invalidate lock, shared, across the lookup and the prepare; and
    // 89fbe3de01cc: the folio's reference goes before it is dropped, none for the caller.
    const lock = g.inodes.invalidateLockWord(g.files.inode(file));
    g.sync.downRead(lock, LockClass.INVALIDATE);
    try {
      const pfn = gmemGetPfnFile(g, file, fileWord, slot, vm, gfn, index);
      if (pfn >= 0 && g.version.getPfnDropsRef) folioPut(g, pfn);
      return pfn;
    } finally {
      g.sync.upRead(lock);
    }
  });
}

/** kvm_gmem_get_file ... fput around `fn`: -EFAULT if slot->gmem.file is gone or dying. */
export function withActiveFile(g: GmemCtx, fileWord: number, fn: (file: number) => number): number {
  const file = g.files.getFileActive(fileWord);
  if (file === NO_HANDLE) return -Errno.EFAULT;
  try {
    return fn(file);
  } finally {
    gmemFput(g, file);
  }
}

function gmemGetPfnFile(g: GmemCtx, file: number, fileWord: number, slot: number, vm: number, gfn: Gfn, index: PgOff): number {
  const got = gmemGetFolio(g, file, fileWord, slot, vm, index);
  if (got < 0) return got;
  const pfn = pfnOf(got);
  const ino = g.files.inode(file);
  let r = 0;
  g.sync.point(P['get_pfn.before_prepare']);
  // The planted bug: the folio lock no longer covers the prepare.
  const unlocked = (g.bugs & Bug['get-pfn-unlocked-prepare']) !== 0;
  if (unlocked) folioUnlock(g, pfn);
  // The planted bug: the flag that says the folio is prepared is stored after folio_unlock.
  const late = (g.bugs & Bug['uptodate-after-folio-unlock']) !== 0;
  let markLate = false;
  const mark = (): void => {
    if (late) markLate = true;
    else markPrepared(g, pfn);
  };
  switch (g.policy) {
    case Policy.ON_ALLOCATE:
      r = prepareFolioAllVms(g, ino, index, pfn, vm);
      break;
    case Policy.ON_FAULT:
      if (!g.folios.test(pfn, PG_UPTODATE)) {
        clearPage(g, pfn);
        r = archPrepareAllVms(g, ino, index, pfn, vm);
        if (r === 0) mark();
      }
      break;
    case Policy.ON_FAULT_OWN_VM:
      if (!g.folios.test(pfn, PG_UPTODATE)) {
        clearPage(g, pfn);
        r = archPrepare(g, vm, gfn, pfn);
        if (r === 0) mark();
      }
      break;
    case Policy.ON_EVERY_FAULT:
      // 3df611b5a04e (7.4): __kvm_gmem_get_pfn cleared it; the arch hook (make_private) runs
      // for private pages only.
      if (g.version.prepareOnlyPrivate) {
        if (gmemIsPrivateMem(g, ino, index)) r = archPrepare(g, vm, gfn, pfn);
        break;
      }
      // 8622ef05709f: uptodate means cleared, set before the hook runs, so a failed prepare
      // leaves a cleared folio; the hook itself skips a page already assigned.
      if (!g.folios.test(pfn, PG_UPTODATE)) {
        clearPage(g, pfn);
        mark();
      }
      r = archPrepare(g, vm, gfn, pfn);
      break;
  }
  if (!unlocked) folioUnlock(g, pfn);
  if (markLate) markPrepared(g, pfn);
  if (r < 0) {
    folioPut(g, pfn);
    return r;
  }
  return pfn;
}

// kvm_gmem_mark_prepared
export function markPrepared(g: GmemCtx, pfn: number): void {
  g.folios.set(pfn, PG_UPTODATE);
  g.stats[C.prepares]++;
}
