// Host mappings of guest_memfd (6.18: 3d3a04fad25a, fe2bf6234e94, 44c6cb9fe988): mmap(2) with
// do_mmap's checks and then kvm_gmem_mmap, munmap(2) and exit_mm, and the host's own accesses
// through a mapping. An access runs on the calling thread as a user access does: the MMU's walk
// of the mapping's page table, and on a missing PTE the fault (kvm_gmem_fault_user_mapping),
// which takes the folio lock and nothing else of guest_memfd's.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { PAGE_SIZE, SandboxLimitError } from '../shm/limits.js';
import { C } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import { P } from '../shm/points.js';
import { gmemIsPrivateMem, gmemIsSharedMem } from './attributes.js';
import { Bug } from './bugs.js';
import type { GmemCtx } from './ctx.js';
import { filemapGrabFolio, folioPut, folioUnlock, hostFill } from './filemap.js';
import { gmemInitShared, gmemSupportsMmap } from './flags.js';
import { PG_HWPOISON, PG_UPTODATE } from './folio.js';
import { markPrepared } from './get_pfn.js';
import { gmemFput } from './guest_memfd.js';
import type { HostMappingInfo } from './vma.js';
import { pfnOf } from '../shm/frames.js';

/** A host access ended in a signal, not an errno: SIGBUS (a fault that cannot map the page). Below every -errno. */
export const HOST_SIGBUS = -0x10000;
/** A host access outside any mapping: SIGSEGV. */
export const HOST_SIGSEGV = -0x10001;

/** Pages a mapping (and its offset) may span: the page count must fit a shared word. */
const MAX_MAP_PAGES = 0x7fffffff;

// mmap(2) of a guest_memfd whose reference the caller holds (fdget): do_mmap's checks, then
// kvm_gmem_mmap; the VMA takes its own reference (get_file). `offset` is page aligned (the
// syscall refused it before the fd lookup otherwise). Returns the mapping's handle or -errno.
export function gmemMmap(g: GmemCtx, file: number, offset: number, len: number, shared: boolean): number {
  // do_mmap: a zero length is EINVAL; any other is rounded up to whole pages (PAGE_ALIGN).
  if (!(len > 0)) return -Errno.EINVAL;
  const npages = Math.ceil(len / PAGE_SIZE);
  const pgoff = offset / PAGE_SIZE;
  if (npages > MAX_MAP_PAGES || pgoff > MAX_MAP_PAGES) {
    throw new SandboxLimitError('mmap', `offset and length may each be at most ${MAX_MAP_PAGES} pages`);
  }
  const ino = g.files.inode(file);
  // Before 6.18 kvm_gmem_fops has no .mmap (do_mmap: -ENODEV); from 6.18 kvm_gmem_mmap checks
  // the file's MMAP flag before the mapping's type.
  if (!g.version.gmemMmap || !gmemSupportsMmap(g, ino)) return -Errno.ENODEV;
  if (!shared) return -Errno.EINVAL;
  const ptes = Math.max(0, Math.min(npages, g.inodes.sizePages(ino) - pgoff));
  const m: HostMappingInfo = { file, inode: ino, pgoff, npages, ptes };
  const lock = g.vmas.mmapLockWord;
  g.sync.downWrite(lock, LockClass.MMAP);
  try {
    const h = g.vmas.alloc(m);
    // get_file: the fd's reference (held by the caller) keeps the count above zero.
    if (!g.files.tryGet(file)) throw new Error(`mmap of gmem file ${file & 255} without a reference`);
    return h;
  } finally {
    g.sync.upWrite(lock);
  }
}

// munmap(2) of a whole mapping (a stale handle is an unmapped range: nothing to do, 0): its PTEs
// go with their folio references, then remove_vma's fput, whose release (if it was the last
// reference) the caller runs as task work.
export function gmemMunmap(g: GmemCtx, map: number): number {
  const lock = g.vmas.mmapLockWord;
  g.sync.downWrite(lock, LockClass.MMAP);
  try {
    if (!g.vmas.valid(map)) return 0;
    for (const pfn of g.vmas.zapAll(map)) folioPut(g, pfn);
    const file = g.vmas.info(map).file;
    g.vmas.free(map);
    gmemFput(g, file);
    return 0;
  } finally {
    g.sync.upWrite(lock);
  }
}

/** exit_mm: every mapping of the process goes (the process exits, or the sandbox is torn down). */
export function gmemExitMm(g: GmemCtx): void {
  for (const h of g.vmas.live()) gmemMunmap(g, h);
}

/**
 * A user access by this thread of `buf.length` bytes at `offset` of mapping `map` (a write of
 * `buf` when `write`, else a read into it), page by page as memset or memcpy goes. Returns 0, or
 * what stopped it: HOST_SIGSEGV (outside the mapping), HOST_SIGBUS, or -ENOMEM (VM_FAULT_OOM,
 * where the kernel would run the OOM killer). The bytes before the failing page were moved;
 * `progress.done` counts them.
 */
export function gmemHostAccess(
  g: GmemCtx,
  map: number,
  offset: number,
  buf: Uint8Array,
  write: boolean,
  progress?: { done: number },
): number {
  const lock = g.vmas.mmapLockWord;
  // The mapping cannot go while the access is in flight: munmap's TLB shootdown waits for it.
  g.sync.downRead(lock, LockClass.MMAP);
  g.stats[C.hostAccesses]++;
  try {
    if (progress) progress.done = 0;
    const r = g.vmas.valid(map) ? hostAccessPages(g, map, offset, buf, write, progress) : HOST_SIGSEGV;
    if (r === HOST_SIGBUS) g.stats[C.hostSigbus]++;
    return r;
  } finally {
    g.sync.upRead(lock);
  }
}

/** gmemHostAccess's pages, under mmap_lock: 0, or what stopped it. */
function hostAccessPages(g: GmemCtx, map: number, offset: number, buf: Uint8Array, write: boolean, progress?: { done: number }): number {
  const m = g.vmas.info(map);
  for (let done = 0; done < buf.length;) {
    const at = offset + done;
    const k = Math.floor(at / PAGE_SIZE);
    if (at < 0 || k >= m.npages) return HOST_SIGSEGV;
    const off = at - k * PAGE_SIZE;
    const n = Math.min(buf.length - done, PAGE_SIZE - off);
    const pfn = hostPte(g, map, m, k, true);
    if (pfn < 0) return pfn;
    let r: number;
    try {
      // The page is pinned: a PUNCH_HOLE may unmap and truncate it meanwhile, and the access
      // still moves the bytes of the page it walked to, as a user access finishes on the old
      // translation before the zap's TLB shootdown.
      g.sync.point(P['host_access.before_copy']);
      if (g.version.gmemAttributes) notePrivateAccess(g, pfn);
      r = copyPage(g, pfn, off, buf, done, n, write);
      folioPut(g, pfn);
    } finally {
      accessDone(g);
    }
    if (r < 0) return r;
    done += n;
    if (progress) progress.done = done;
  }
  return 0;
}

/**
 * Not the kernel's: the checker's count of a host access to a page the file holds at a private
 * index (7.4). No kernel makes one: a conversion to private unmaps the PTEs and waits for the
 * accesses in flight (the TLB shootdown) before it stores the attribute, and the fault refuses a
 * private index under the invalidate lock. A page truncated meanwhile is no longer the file's.
 */
function notePrivateAccess(g: GmemCtx, pfn: number): void {
  const ino = g.folios.inode(pfn);
  const index = g.folios.index(pfn);
  if (ino < 0 || g.inodes.peek(ino, index) !== pfn || !gmemIsPrivateMem(g, ino, index)) return;
  g.stats[C.hostPrivateAccesses]++;
}

/**
 * The bytes of one page. A user write to a page the RMP gives a guest takes an RMP #PF, which
 * the process gets as SIGBUS: the kernel wrote nothing, so it is not counted as a host RMP fault.
 */
function copyPage(g: GmemCtx, pfn: number, off: number, buf: Uint8Array, from: number, n: number, write: boolean): number {
  const at = pfn * PAGE_SIZE + off;
  if (!write) {
    buf.set(g.mem.host.subarray(at, at + n), from);
    return 0;
  }
  if (!g.arch.hostWritable(pfnOf(pfn))) return HOST_SIGBUS;
  g.mem.host.set(buf.subarray(from, from + n), at);
  return 0;
}

/**
 * The MMU's walk to page `k` of the mapping: the pfn its PTE maps, with a folio reference held
 * for the access (a zap's TLB shootdown waits for an access in flight, so the page is not freed
 * under it); a missing PTE faults first. An `access` counts as in flight from before its PTE
 * read until accessDone, so that a shootdown (tlbShootdownWait) after a zap waits for it; a pin
 * (GUP) is not in flight: its reference is what a conversion's check must see.
 */
export function hostPte(g: GmemCtx, map: number, m: HostMappingInfo, k: number, access: boolean): number {
  const w = g.mem.w;
  for (;;) {
    if (k < m.ptes) {
      if (access) Atomics.add(w, g.vmas.inflightWord, 1);
      const word = g.vmas.pteWord(map, k);
      const v = Atomics.load(w, word);
      if (v !== 0) {
        if (g.folios.tryGet(v - 1)) {
          if (Atomics.load(w, word) === v) return v - 1;
          folioPut(g, v - 1);
        }
        if (access) accessDone(g);
        continue;
      }
      if (access) accessDone(g);
    }
    const r = gmemFaultUserMapping(g, map, m, k);
    if (r < 0) return r;
  }
}

/** An access has let go of its page: a shootdown waiting for it may go on. */
function accessDone(g: GmemCtx): void {
  const w = g.mem.w;
  Atomics.sub(w, g.vmas.inflightWord, 1);
  if (Atomics.load(w, g.vmas.inflightWaitersWord) > 0) g.sync.wake(g.vmas.inflightWord, Infinity);
}

/** Loads a shootdown spins before it sleeps. */
const SHOOTDOWN_SPIN = 100;

/**
 * The TLB shootdown after a zap of host PTEs (flush_tlb_mm_range's IPIs): returns once no host
 * access that read a PTE before the zap is still using its page. Such an access takes no lock
 * while in flight, so the wait always ends.
 */
export function tlbShootdownWait(g: GmemCtx): void {
  const w = g.mem.w;
  const word = g.vmas.inflightWord;
  for (let v = Atomics.load(w, word); v !== 0; v = Atomics.load(w, word)) {
    Atomics.add(w, g.vmas.inflightWaitersWord, 1);
    try {
      g.sync.waitWhileEquals(word, v, SHOOTDOWN_SPIN);
    } finally {
      Atomics.sub(w, g.vmas.inflightWaitersWord, 1);
    }
  }
}

// kvm_gmem_fault_user_mapping (6.18), with what __do_fault and finish_fault do around it: the
// folio comes back locked; a poisoned one is VM_FAULT_HWPOISON (SIGBUS); the PTE is set unless a
// racing fault set it first (VM_FAULT_NOPAGE), and keeps the fault's folio reference.
function gmemFaultUserMapping(g: GmemCtx, map: number, m: HostMappingInfo, k: number): number {
  const index = m.pgoff + k;
  if (index >= g.inodes.sizePages(m.inode)) return HOST_SIGBUS;
  const pfn = grabSharedFolio(g, m.inode, index);
  // vmf_error: -ENOMEM is VM_FAULT_OOM, anything else (-EACCES for private memory) SIGBUS.
  if (pfn < 0) return pfn === -Errno.ENOMEM ? pfn : HOST_SIGBUS;
  // Up to date doubles as cleared: whoever meets the folio first (this fault or kvm_gmem_get_pfn)
  // clears it, once, under the folio lock.
  if (!g.folios.test(pfn, PG_UPTODATE)) {
    // The planted bug: the folio is marked without its clear.
    if ((g.bugs & Bug['host-fault-skips-clear']) === 0 && hostFill(g, pfnOf(pfn), 0, 'the clear in kvm_gmem_fault_user_mapping'))
      g.stats[C.clears]++;
    markPrepared(g, pfn);
  }
  if (g.folios.test(pfn, PG_HWPOISON)) {
    folioUnlock(g, pfn);
    folioPut(g, pfn);
    return HOST_SIGBUS;
  }
  // finish_fault, the folio still locked: a PUNCH_HOLE's truncation waits here to unmap it.
  g.sync.point(P['host_fault.before_pte']);
  if (!g.vmas.installPte(map, k, pfn)) folioPut(g, pfn);
  else g.stats[C.hostFaults]++;
  folioUnlock(g, pfn);
  return 0;
}

// The folio of a host fault, if the memory is the host's: 6.18 (fe2bf6234e94) lets only an
// INIT_SHARED file in host page tables; 7.4 (1ae5be958ff7) asks the index's attribute under the
// invalidate lock (shared), and drops the lock before the folio is mapped. -EACCES if private.
function grabSharedFolio(g: GmemCtx, ino: number, index: number): number {
  if (!g.version.gmemAttributes) return gmemInitShared(g, ino) ? filemapGrabFolio(g, ino, index) : -Errno.EACCES;
  // The planted bug: the attribute is read under RCU only, and nothing rechecks it.
  if (g.bugs & Bug['host-fault-skips-invalidate-lock'])
    return gmemIsSharedMem(g, ino, index) ? filemapGrabFolio(g, ino, index) : -Errno.EACCES;
  const lock = g.inodes.invalidateLockWord(ino);
  g.sync.downRead(lock, LockClass.INVALIDATE);
  try {
    return gmemIsSharedMem(g, ino, index) ? filemapGrabFolio(g, ino, index) : -Errno.EACCES;
  } finally {
    g.sync.upRead(lock);
  }
}
