// virt/kvm/guest_memfd.c: kvm_gmem_invalidate_begin/end over the bindings of an inode's files,
// and the inode table lock that guards the file lists they walk.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { P } from '../shm/points.js';
import { Site } from '../shm/slab.js';
import { LockClass } from '../shm/sync/classes.js';
import type { GmemCtx } from './ctx.js';

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

// kvm_gmem_invalidate_begin for one file's bindings over [start, end).
export function invalidateBegin(g: GmemCtx, per: Array<[number, number[]]>): void {
  for (const [vm, ranges] of per) g.kvm.invalidateBegin(vm, ranges);
}

// kvm_gmem_invalidate_end
export function invalidateEnd(g: GmemCtx, per: Array<[number, number[]]>): void {
  for (const [vm] of per) g.kvm.invalidateEnd(vm);
}
