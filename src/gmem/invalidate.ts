// virt/kvm/guest_memfd.c: kvm_gmem_invalidate_begin/end over the bindings of an inode's files,
// and the inode table lock that guards the file lists they walk.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { P } from '../shm/points.js';
import { Site } from '../shm/slab.js';
import { LockClass } from '../shm/sync/classes.js';
import type { GmemCtx } from './ctx.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED } from './flags.js';

/** enum kvm_gfn_range_filter: which mappings of a gfn range an invalidation zaps. */
export const KVM_FILTER_SHARED = 1 << 0;
export const KVM_FILTER_PRIVATE = 1 << 1;

// kvm_gmem_get_all_gfns_filter (e088c7f86bef, 7.4): both kinds when gmem_in_place_conversion is
// on; otherwise what the file can hold (kvm_gmem_get_invalidate_filter, 5d3341d684be, 6.18).
export function allGfnsFilter(g: GmemCtx, ino: number): number {
  if (g.version.allGfnsFilter && g.inPlace) return KVM_FILTER_SHARED | KVM_FILTER_PRIVATE;
  return g.inodes.flags(ino) & GUEST_MEMFD_FLAG_INIT_SHARED ? KVM_FILTER_SHARED : KVM_FILTER_PRIVATE;
}

export function withTableLock<T>(g: GmemCtx, fn: () => T): T {
  g.sync.mutexLock(g.inodes.tableLockWord, LockClass.GMEM_TABLE);
  try {
    return fn();
  } finally {
    g.sync.mutexUnlock(g.inodes.tableLockWord);
  }
}

/**
 * kvm_gmem_invalidate_begin's walk of one file's bindings over index range [start, end): the
 * gfn ranges, read through each binding's slot pointer (a freed slot is reported).
 */
export function fileBoundRanges(g: GmemCtx, file: number, start: number, end: number): number[] {
  // Under filemap_invalidate_lock: "Bindings must be stable across invalidation" (kvm_gmem_punch_hole).
  g.sync.assertHeld(g.inodes.invalidateLockWord(g.files.inode(file)));
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
export function boundRanges(g: GmemCtx, ino: number, start: number, end: number): Array<[number, number[]]> {
  const out: Array<[number, number[]]> = [];
  const n = g.inodes.nfiles(ino);
  for (let k = 0; k < n; k++) {
    const f = g.inodes.file(ino, k);
    const ranges = fileBoundRanges(g, f, start, end);
    if (ranges.length > 0) out.push([g.files.vm(f), ranges]);
  }
  return out;
}

// kvm_gmem_invalidate_begin for one file's bindings over [start, end), zapping the mappings
// `filter` names.
export function invalidateBegin(g: GmemCtx, per: Array<[number, number[]]>, filter: number): void {
  for (const [vm, ranges] of per) g.kvm.invalidateBegin(vm, ranges, filter);
}

// kvm_gmem_invalidate_end
export function invalidateEnd(g: GmemCtx, per: Array<[number, number[]]>): void {
  for (const [vm] of per) g.kvm.invalidateEnd(vm);
}
