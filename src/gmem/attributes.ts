// guest_memfd's per-inode memory attributes (struct gmem_inode.attributes, 1ae5be958ff7, 7.4):
// every index of the file, allocated or not, is shared (0) or private
// (KVM_MEMORY_ATTRIBUTE_PRIVATE). The kernel keeps them in a maple tree whose external lock is
// the inode's invalidate lock; writers hold it for write, readers hold it or read under RCU and
// recheck mmu_invalidate_seq. The model keeps one word per index, at the inode's filemap offsets.
// The table itself is attributes_table.ts's; here, the kernel's functions over it.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { LockClass } from '../shm/sync/classes.js';
import type { GmemCtx } from './ctx.js';
import { shouldFailSlab } from './failslab.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from './attributes_table.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED } from './flags.js';

export { KVM_MEMORY_ATTRIBUTE_PRIVATE } from './attributes_table.js';

// kvm_gmem_get_default_attributes
function defaultAttributes(g: GmemCtx, ino: number): number {
  return g.inodes.flags(ino) & GUEST_MEMFD_FLAG_INIT_SHARED ? 0 : KVM_MEMORY_ATTRIBUTE_PRIVATE;
}

// kvm_gmem_init_inode's store of the defaults over the whole file, under the invalidate lock
// "purely to make lockdep happy" (nothing else can reach the inode yet). -ENOMEM if the maple
// tree's node cannot be allocated (KVM_CREATE_GUEST_MEMFD then fails).
export function gmemInitAttributes(g: GmemCtx, ino: number): number {
  const lock = g.inodes.invalidateLockWord(ino);
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  try {
    if (shouldFailSlab(g.mem)) return -Errno.ENOMEM;
    g.attrs.set(ino, 0, g.inodes.sizePages(ino), defaultAttributes(g, ino));
    return 0;
  } finally {
    g.sync.upWrite(lock);
  }
}

// kvm_gmem_is_private_mem
export function gmemIsPrivateMem(g: GmemCtx, ino: number, index: number): boolean {
  return (g.attrs.get(ino, index) & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0;
}

// kvm_gmem_is_shared_mem
export function gmemIsSharedMem(g: GmemCtx, ino: number, index: number): boolean {
  return !gmemIsPrivateMem(g, ino, index);
}

// kvm_gmem_range_has_attributes: lockdep_assert(mt_lock_is_held(mt)).
export function gmemRangeHasAttributes(g: GmemCtx, ino: number, start: number, n: number, attrs: number): boolean {
  g.sync.assertHeld(g.inodes.invalidateLockWord(ino));
  for (let i = start; i < start + n; i++) if (g.attrs.get(ino, i) !== attrs) return false;
  return true;
}

// kvm_gmem_is_private_gfn's lookup once the file is in hand: the index's attribute read under
// RCU, stale as soon as it is read (the caller rechecks mmu_invalidate_seq or holds the lock).
export function gmemFileIsPrivate(g: GmemCtx, file: number, index: number): boolean {
  return gmemIsPrivateMem(g, g.files.inode(file), index);
}
