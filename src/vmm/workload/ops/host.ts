// The VMM's own accesses to guest memory through host mappings of guest_memfd (6.18): mmap of a
// file range, touch (a read or a write of one page through a mapping), munmap. A touch is a user
// access on this VMM thread: a missing PTE faults through kvm_gmem_fault_user_mapping, so with
// two VMM threads it races another's PUNCH_HOLE, and it races the vCPUs' kvm_gmem_get_pfn for the
// first clear of a folio. Its reads are checked as a guest checks its own: the guests' tag at the
// start of the page, and this thread's tag further in.

import { gmemSupportsMmap } from '../../../gmem/flags.js';
import { HOST_SIGBUS, gmemHostAccess, gmemMmap } from '../../../gmem/mmap.js';
import { kvmMunmap } from '../../../kvm/host_mm.js';
import { PAGE_SIZE } from '../../../shm/limits.js';
import { C } from '../../../shm/stats.js';
import { TAG_MAGIC } from '../../../vcpu-workers/guest-workload.js';
import { type HostMap, regionsOf } from '../layout.js';
import type { OpContext, OpHandler } from './op.js';

/** The most mappings one VMM thread keeps from its 'mmap' ops (another 'mmap' then does nothing). */
const MAX_OWN_MAPS = 4;
/** 'host': a VMM thread's tag, [magic, inode, index, generation]. */
export const HOST_TAG_MAGIC = 0x686f7374;
/** Where VMM thread t's tag is in a page: HOST_TAG_AT + 16 t, past the guests' tag at 0. */
export const HOST_TAG_AT = PAGE_SIZE / 2;
const TAG_BYTES = 16;

/** mmap(MAP_SHARED) of the range, if the file was made with GUEST_MEMFD_FLAG_MMAP. */
export const mmap: OpHandler = {
  range: 'file',
  run(c, { fd, index, len }) {
    if (c.maps.length >= MAX_OWN_MAPS) return null;
    const g = c.sb.k.g;
    const h = c.sb.withGmemFd(fd, (f) => {
      if (f < 0) return f;
      // Only files the VMM made mappable: a launching SNP VM's is not.
      return gmemSupportsMmap(g, g.files.inode(f)) ? gmemMmap(g, f, index * PAGE_SIZE, len * PAGE_SIZE, true) : null;
    });
    if (h === null || h < 0) return h;
    c.maps.push({ handle: h, pgoff: index, npages: len, regions: regionsOf(c.t.regions, (r) => r.fd === fd) });
    return 0;
  },
};

/** A read or a write of one page through the layout's mapping or one of this thread's; SIGBUS is an outcome (counted), not an error. */
export const touch: OpHandler = {
  range: 'file',
  run(c) {
    const maps = [...c.t.hostMaps, ...c.maps];
    if (maps.length === 0) return null;
    const m = maps[c.rng.below(maps.length)];
    const k = c.rng.below(m.npages);
    return touchPage(c, m, k, c.rng.below(2) === 0);
  },
};

/** A write of this thread's next tag to page `k` of mapping `m`, or a read of the page, checked. */
export function touchPage(c: OpContext, m: HostMap, k: number, write: boolean): number {
  return write ? hostWrite(c, m, k) : hostRead(c, m, k);
}

/**
 * munmap(2) of one of this thread's mappings. With none, a short-lived one: the range mapped, its
 * first page read (faulted in) and the mapping gone again, its teardown racing the others' punches.
 */
export const munmap: OpHandler = {
  range: 'file',
  run(c, range) {
    let e = 0;
    if (c.maps.length === 0) {
      const made = mmap.run(c, range);
      if (made === null || made < 0) return made;
      e = hostRead(c, c.maps[0], 0);
    }
    const [m] = c.maps.splice(c.maps.length === 1 ? 0 : c.rng.below(c.maps.length), 1);
    return kvmMunmap(c.sb.k, m.handle) || e;
  },
};

/** The VM and gfn a layout region binds the mapping's page `k` at, or null for an index no region binds. */
function boundAt(c: OpContext, m: HostMap, k: number): { vm: number; gfn: number } | null {
  const index = m.pgoff + k;
  for (const i of m.regions) {
    const r = c.t.regions[i];
    if (index >= r.pgoff && index < r.pgoff + r.npages) return { vm: r.vm, gfn: r.gfn + index - r.pgoff };
  }
  return null;
}

/** The guests' discard epoch of that gfn (-1: unbound, never checked for a lost write). */
function epochAt(c: OpContext, at: { vm: number; gfn: number } | null): number {
  return at === null ? -1 : c.rc.epoch(at.vm, at.gfn);
}

/** A user access's result as the op's: a signal is an outcome, counted by gmemHostAccess; SIGSEGV cannot happen on a live mapping. */
function outcome(r: number, m: HostMap): number {
  if (r === HOST_SIGBUS || r >= 0) return 0;
  if (r < -0xffff) throw new Error(`a host access through mapping ${m.handle & 255}, which this VMM holds, met SIGSEGV`);
  return r;
}

/** Key of a file page in `hostWrites`. */
function pageKey(ino: number, index: number): number {
  return ino * 0x100000 + index;
}

/** Writes this thread's next tag for the page. */
function hostWrite(c: OpContext, m: HostMap, k: number): number {
  const g = c.sb.k.g;
  const ino = g.vmas.info(m.handle).inode;
  const index = m.pgoff + k;
  const key = pageKey(ino, index);
  const epoch = epochAt(c, boundAt(c, m, k));
  const gen = (c.hostWrites.get(key)?.gen ?? 0) + 1;
  const tag = new Uint32Array([HOST_TAG_MAGIC, ino, index, gen]);
  const r = gmemHostAccess(g, m.handle, k * PAGE_SIZE + HOST_TAG_AT + TAG_BYTES * c.t.thread, new Uint8Array(tag.buffer), true);
  if (r === 0) c.hostWrites.set(key, { gen, epoch });
  return outcome(r, m);
}

/**
 * Reads the page up to this thread's tag, and checks both tags: the guests' must be zeros or a
 * tag of the gfn a region binds the page at (or a torn one of it); this thread's must be zeros or
 * its own tag of this page, and its latest when no discard ran since it was written (by the
 * guests' epochs, as a guest checks its own).
 */
function hostRead(c: OpContext, m: HostMap, k: number): number {
  const g = c.sb.k.g;
  const ino = g.vmas.info(m.handle).inode;
  const index = m.pgoff + k;
  const at = boundAt(c, m, k);
  const e0 = epochAt(c, at);
  const buf = new Uint8Array(HOST_TAG_AT + TAG_BYTES * (c.t.thread + 1));
  const r = gmemHostAccess(g, m.handle, k * PAGE_SIZE, buf, false);
  if (r !== 0) return outcome(r, m);
  const e1 = epochAt(c, at);
  const guest = new Uint32Array(buf.buffer, 0, 4);
  const own = new Uint32Array(buf.buffer, buf.length - TAG_BYTES, 4);
  const wrote = c.hostWrites.get(pageKey(ino, index));
  const undisturbed = at !== null && e0 === e1 && (e0 & 1) === 0;
  if (!guestTagFits(guest, buf, at?.gfn ?? -1) || !ownTagFits(own, ino, index)) c.sb.k.stats[C.hostStaleReads]++;
  else if (wrote !== undefined && undisturbed && wrote.epoch === e0 && own[3] !== wrote.gen) c.sb.k.stats[C.hostLostWrites]++;
  return 0;
}

/** Zeros, a guest's tag of `gfn`, or one torn by a racing write (each byte of its magic and gfn 0 or the tag's). */
function guestTagFits(seen: Uint32Array, bytes: Uint8Array, gfn: number): boolean {
  if (seen[0] === 0 && seen[1] === 0 && seen[2] === 0 && seen[3] === 0) return true;
  if (gfn < 0) return false;
  if (seen[0] === TAG_MAGIC && seen[1] === gfn) return true;
  const want = new Uint8Array(new Uint32Array([TAG_MAGIC, gfn]).buffer);
  for (let b = 0; b < 8; b++) if (bytes[b] !== 0 && bytes[b] !== want[b]) return false;
  return true;
}

/** Zeros, or this thread's tag of this page (its generation is checked by the caller). */
function ownTagFits(seen: Uint32Array, ino: number, index: number): boolean {
  if (seen[0] === 0 && seen[1] === 0 && seen[2] === 0 && seen[3] === 0) return true;
  return seen[0] === HOST_TAG_MAGIC && seen[1] === ino && seen[2] === index;
}
