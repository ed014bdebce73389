// virt/kvm/guest_memfd.c in 7.4: KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd, the in-place
// shared <=> private conversion (799c9fadc639, dcde2f853ff4, 6fa1dab756fd, 856852ef2108).
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { P } from '../shm/points.js';
import { C } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import { pfnOf } from '../shm/frames.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, gmemRangeHasAttributes } from './attributes.js';
import { Bug } from './bugs.js';
import type { GmemCtx } from './ctx.js';
import { shouldFailSlab } from './failslab.js';
import { folioPut, lruAddDrainAll } from './filemap.js';
import { KVM_FILTER_PRIVATE, KVM_FILTER_SHARED, boundRanges, invalidateBegin, invalidateEnd } from './invalidate.js';
import { tlbShootdownWait } from './mmap.js';

/** struct kvm_memory_attributes2's reserved[11]. */
export const ATTRIBUTES2_RESERVED_WORDS = 11;
const U64_MASK = (1n << 64n) - 1n;
const PAGE = BigInt(PAGE_SIZE);

/** struct kvm_memory_attributes2 as userspace fills it (u64 fields; error_offset is output only). */
export interface MemoryAttributes2 {
  offset: bigint;
  size: bigint;
  attributes: bigint;
  flags: bigint;
  reserved: readonly bigint[];
}

/** What the ioctl returns, and error_offset (bytes) where the kernel writes it back (EAGAIN, ENOMEM). */
export interface Attributes2Result {
  r: number;
  errorOffset?: number;
}

// kvm_gmem_ioctl(KVM_SET_MEMORY_ATTRIBUTES2): before 7.4 guest_memfd has no .unlocked_ioctl, and
// with gmem_in_place_conversion off the case answers ENOTTY, either way before any argument.
export function gmemIoctlSetAttributes2(g: GmemCtx, file: number, a: MemoryAttributes2): Attributes2Result {
  if (!g.version.setMemoryAttributes2 || !g.inPlace) return { r: -Errno.ENOTTY };
  return gmemSetAttributes(g, file, a);
}

// kvm_gmem_set_attributes: the argument checks in the kernel's order, then the conversion.
function gmemSetAttributes(g: GmemCtx, file: number, a: MemoryAttributes2): Attributes2Result {
  const invalid = { r: -Errno.EINVAL };
  if (a.flags !== 0n) return invalid;
  if (a.reserved.some((w) => w !== 0n)) return invalid;
  if (!g.kvm.hasPrivateMem(g.files.vm(file))) return invalid;
  if (a.attributes & ~BigInt(KVM_MEMORY_ATTRIBUTE_PRIVATE)) return invalid;
  if (a.size === 0n || ((a.offset + a.size) & U64_MASK) < a.offset) return invalid;
  if (a.offset % PAGE !== 0n || a.size % PAGE !== 0n) return invalid;
  const ino = g.files.inode(file);
  const isize = BigInt(g.inodes.sizePages(ino)) * PAGE;
  if (a.offset >= isize || a.offset + a.size > isize) return invalid;
  const err = { index: 0 };
  const r = setAttributesLocked(g, ino, Number(a.offset / PAGE), Number(a.size / PAGE), Number(a.attributes), err);
  return r === 0 ? { r } : { r, errorOffset: err.index * PAGE_SIZE };
}

// __kvm_gmem_set_attributes, under the invalidate lock: nothing to do if the range already has
// the attributes; the maple tree's nodes first (ENOMEM); to private, the host's mappings go and
// no folio may have a reference beyond the page cache's (EAGAIN); then the guest's mappings of
// the old kind are zapped, a page going shared goes back to the host (SNP), and the attributes
// are stored.
function setAttributesLocked(g: GmemCtx, ino: number, start: number, n: number, attrs: number, err: { index: number }): number {
  const toPrivate = (attrs & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0;
  const end = start + n;
  const lock = g.inodes.invalidateLockWord(ino);
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  try {
    if (gmemRangeHasAttributes(g, ino, start, n, attrs)) return 0;
    // kvm_gmem_mas_preallocate
    if (shouldFailSlab(g.mem)) {
      err.index = start;
      return -Errno.ENOMEM;
    }
    if (toPrivate) {
      const bad = unmapAndCheckReferences(g, ino, start, end);
      if (bad >= 0) {
        err.index = Math.max(start, bad);
        g.stats[C.conversionsRefused]++;
        return -Errno.EAGAIN;
      }
    }
    // From here on the conversion cannot fail.
    const per = boundRanges(g, ino, start, end);
    invalidateBegin(g, per, toPrivate ? KVM_FILTER_SHARED : KVM_FILTER_PRIVATE);
    g.sync.point(P['set_attributes.after_invalidate_begin']);
    // kvm_arch_has_gmem_convert: x86 always has the hook; it acts on SNP's RMP only.
    if (!toPrivate) gmemMakeShared(g, ino, start, end);
    g.attrs.set(ino, start, end, attrs);
    invalidateEnd(g, per);
    g.stats[C.conversions]++;
    return 0;
  } finally {
    g.sync.upWrite(lock);
  }
}

// The to-private half of __kvm_gmem_set_attributes before its point of no return: the host's
// mappings go (unmap_mapping_pages), then kvm_gmem_has_outstanding_references. The first index
// refused, or -1.
function unmapAndCheckReferences(g: GmemCtx, ino: number, start: number, end: number): number {
  // The planted bug: the references are counted first, each host PTE's taken as expected.
  if (g.bugs & Bug['convert-checks-refs-before-unmap']) {
    const bad = outstandingReference(g, ino, start, end);
    g.sync.point(P['set_attributes.after_ref_check']);
    if (bad < 0) unmapMappingPages(g, ino, start, end);
    return bad;
  }
  unmapMappingPages(g, ino, start, end);
  return outstandingReference(g, ino, start, end);
}

// unmap_mapping_pages(mapping, start, nr_pages, false): the host PTEs of the range in every
// process, each with its folio reference, then the TLB shootdown.
function unmapMappingPages(g: GmemCtx, ino: number, start: number, end: number): void {
  const zapped = g.vmas.unmapRange(ino, start, end);
  g.stats[C.hostPtesZapped] += zapped.length;
  for (const pfn of zapped) folioPut(g, pfn);
  tlbShootdownWait(g);
}

// kvm_gmem_has_outstanding_references: the first index of [start, end) whose folio holds a
// reference beyond the page cache's (and filemap_get_folios' own), or -1. A pinned or mapped
// folio fails at once; any other mismatch drains the per-CPU LRU batches once per call
// (lru_cache_drain_for_folio) and checks that folio again. Holes pass.
function outstandingReference(g: GmemCtx, ino: number, start: number, end: number): number {
  let drained = false;
  for (let index = start; index < end; index++) {
    const pfn = g.inodes.peek(ino, index);
    // filemap_get_folios: a folio whose count already reached zero is on its way out.
    if (pfn < 0 || !g.folios.tryGet(pfn)) continue;
    try {
      // Stable under the invalidate lock (no truncation can run); a reused pfn would be a model bug.
      if (g.folios.inode(pfn) !== ino || g.folios.index(pfn) !== index)
        throw new Error(`pfn ${pfn} left index ${index} under the invalidate lock`);
      if (g.folios.pincount(pfn) > 0) return index;
      const mapped = g.vmas.mapCount(pfn, ino, index);
      // The planted bug (refs before unmap) takes the PTEs' references as expected.
      if (mapped > 0 && (g.bugs & Bug['convert-checks-refs-before-unmap']) === 0) return index;
      // The page cache's reference and filemap_get_folios' (ours); the planted bug expects the LRU batch's too.
      const expected = 2 + mapped + (g.bugs & Bug['convert-wrong-expected-refcount'] ? 1 : 0);
      if (g.folios.refcount(pfn) <= expected) continue;
      // The planted bug: no drain, the batch's reference is taken for an outstanding one.
      if (!drained && (g.bugs & Bug['convert-skips-lru-drain']) === 0) {
        lruAddDrainAll(g);
        drained = true;
      }
      const r = g.folios.refcount(pfn);
      if (r <= expected) continue;
      noteRefusal(g, pfn, r, expected);
      return index;
    } finally {
      folioPut(g, pfn);
    }
  }
  return -1;
}

// Not the kernel's: the checker's note of a refusal whose only references beyond the expected
// were the per-CPU LRU batches' (lru_add_drain_all had emptied them: no kernel refuses such a
// folio). The batches are read after the count `r`, so a batch drained meanwhile is not mistaken.
function noteRefusal(g: GmemCtx, pfn: number, r: number, expected: number): void {
  if (r - g.lru.refsOf(pfn) <= expected) g.stats[C.conversionsRefusedLruOnly]++;
}

// kvm_gmem_make_shared: kvm_arch_gmem_make_shared for each allocated folio of the range (holes
// have nothing to give back).
function gmemMakeShared(g: GmemCtx, ino: number, start: number, end: number): void {
  for (let index = start; index < end; index++) {
    const pfn = g.inodes.peek(ino, index);
    if (pfn >= 0) g.arch.makeShared(pfnOf(pfn));
  }
}
