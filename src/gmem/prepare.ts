// virt/kvm/guest_memfd.c: clearing a folio and the arch prepare hook (kvm_gmem_prepare_folio),
// per version: every bound VM (6.10, b85524314a) or the faulting VM only (6dd761d92f66).
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { P } from '../shm/points.js';
import { Site } from '../shm/slab.js';
import { C } from '../shm/stats.js';
import type { GmemCtx } from './ctx.js';
import { Bug } from './bugs.js';
import { PG_UPTODATE } from './folio.js';
import { type HostWrite, hostFill } from './filemap.js';
import { type Gfn, type Pfn, gfnOf } from '../shm/frames.js';

/** Clears a page as the host (clear_highpage); refused, and counted, if the RMP forbids it. */
export function clearPage(g: GmemCtx, pfn: Pfn, site: HostWrite = 'clear_highpage in kvm_gmem_get_pfn'): void {
  g.sync.point(P['get_pfn.before_clear']);
  if (g.bugs & Bug['prepare-skips-clear']) return;
  hostFill(g, pfn, 0, site);
  g.stats[C.clears]++;
}

/** One arch prepare call for `vm` at `gfn` (counted only where the arch needs it); `otherVm`: made by another VM's fault. */
export function archPrepare(g: GmemCtx, vm: number, gfn: Gfn, pfn: Pfn, otherVm = false): number {
  if (!g.arch.prepareNeeded(vm)) return 0;
  g.stats[C.archPrepareCalls]++;
  if (otherVm) g.stats[C.archPrepareCallsOtherVm]++;
  return g.arch.prepare(vm, gfn, pfn);
}

// kvm_gmem_prepare_folio as of 6.10 and b85524314a: the arch hook runs for every VM with a
// binding at `index`, in the inode's file list order (newest file first). `faulting` is the VM
// whose fault asked (-1 for fallocate): the calls for the others are what 6dd761d92f66 removed.
export function archPrepareAllVms(g: GmemCtx, ino: number, index: number, pfn: Pfn, faulting: number): number {
  const n = g.inodes.nfiles(ino);
  for (let k = 0; k < n; k++) {
    const f = g.inodes.file(ino, k);
    const vm = g.files.vm(f);
    // kvm_arch_gmem_prepare_needed comes first: a VM that registers nothing has its slot unread.
    if (!g.arch.prepareNeeded(vm)) continue;
    const b = g.files.bindingAt(f, index);
    if (b < 0) continue;
    g.kvm.slotLive(vm, g.files.bindingSlot(f, b), Site['kvm_gmem_prepare_folio: slot->base_gfn']);
    const r = archPrepare(g, vm, gfnOf(g.files.bindingGfn(f, b, index)), pfn, faulting >= 0 && vm !== faulting);
    if (r < 0) return r;
  }
  return 0;
}

// 6.10 kvm_gmem_get_folio(prepare=true): clear if not up to date, then the arch hook every time.
export function prepareFolioAllVms(g: GmemCtx, ino: number, index: number, pfn: Pfn, faulting: number): number {
  if (!g.folios.test(pfn, PG_UPTODATE)) {
    clearPage(g, pfn, 'clear_highpage in kvm_gmem_get_folio');
    g.folios.set(pfn, PG_UPTODATE);
    g.stats[C.prepares]++;
  }
  return archPrepareAllVms(g, ino, index, pfn, faulting);
}
