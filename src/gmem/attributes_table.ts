// guest_memfd's per-inode attribute store (struct gmem_inode.attributes, the maple tree of
// 1ae5be958ff7, 7.4): one word per filemap slot, an inode's indices at its filemap offsets, each
// shared (0) or KVM_MEMORY_ATTRIBUTE_PRIVATE. Owns the 'gmem_attributes' region; the kernel's
// functions over it (and their locking) are attributes.ts's.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { NO_WRITE_POINTS, type WritePoints } from '../shm/sync/sync.js';
import type { Inodes } from './inode.js';

/** KVM_MEMORY_ATTRIBUTE_PRIVATE (include/uapi/linux/kvm.h). */
export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3;

const REGION = 'gmem_attributes';

/** One word per filemap slot: an inode's indices sit at its filemap offsets; then the writes' count. */
export function declareGmemAttributes(lb: LayoutBuilder, filemapPages: number): void {
  lb.add(REGION, filemapPages + 1, 'gmem/attributes_table.ts');
}

export class GmemAttributes {
  readonly base: number;
  private readonly w: Int32Array;

  /** A checker's word, not the kernel's: odd while a store is in progress, bumped around each. */
  private readonly seqWord: number;

  constructor(
    mem: Mem,
    private readonly inodes: Inodes,
    /** The point before each write (the kernel's view passes its Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
    this.seqWord = this.base + mem.limits.filemapPages;
  }

  /** The stores' sequence count (odd: one in progress), for a checker that reads attributes around an op. */
  seq(): number {
    return Atomics.load(this.w, this.seqWord);
  }

  private word(ino: number, index: number): number {
    return this.base + this.inodes.filemapOffset(ino) + index;
  }
  /** The attributes of `index` (mtree_load; RCU, no lock: the caller rechecks or holds the lock). */
  get(ino: number, index: number): number {
    return Atomics.load(this.w, this.word(ino, index));
  }
  /** mas_store_prealloc over [start, end): the caller holds the invalidate lock for write. */
  set(ino: number, start: number, end: number, attrs: number): void {
    // One object per inode: the range is stored at once (mas_store_prealloc).
    this.wp.sharedWrite(this.base, this.word(ino, 0));
    Atomics.add(this.w, this.seqWord, 1);
    for (let i = start; i < end; i++) Atomics.store(this.w, this.word(ino, i), attrs);
    Atomics.add(this.w, this.seqWord, 1);
  }
}
