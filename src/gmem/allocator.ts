// The host pfn allocator: a stack of free pfns under one mutex (the zone's free lists), and in
// front of it one small list per thread (the kernel's per-CPU pagesets, pcp lists): a thread
// allocates from and frees to its own list, and takes the zone lock only to move a batch, so two
// vCPUs faulting at once neither share the lock's cache line nor get neighbouring pfns.
// Owns the 'pfn_allocator' region.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';
import { LockClass } from '../shm/sync/classes.js';
import type { Sync } from '../shm/sync/sync.js';

const A_LOCK = 0;
const A_TOP = 1;
/** Fault injection: allocations fail while the free count is at or below this reserve. Read on
 * every allocation, so on a line of its own, away from the lock and top the refills write. */
const A_RESERVE = 16;
const A_STACK = 32;

/** Pages a pcp list moves to or from the zone at once (the kernel's pcp->batch: 63 by default). */
export const PCP_BATCH = 32;
/** A pcp list holding this many after a free gives a batch back (pcp->high). */
export const PCP_HIGH = 3 * PCP_BATCH;
const P_LOCK = 0;
const P_COUNT = 1;
const P_LIST = 16;
/** Words per thread's pcp list: its own cache lines. */
const PCP_WORDS = P_LIST + PCP_HIGH;

const REGION = 'pfn_allocator';

const pcpArea = (nrPfns: number): number => Math.ceil((A_STACK + nrPfns) / 16) * 16;

export function declareAllocator(lb: LayoutBuilder, nrPfns: number): void {
  lb.add(REGION, pcpArea(nrPfns) + LIMITS.MAX_THREADS * PCP_WORDS, 'gmem/allocator.ts');
}

/** The allocator's lock word, for reports. */
export function allocatorLockWord(mem: Mem): number {
  return regionBase(mem, REGION) + A_LOCK;
}

/** The thread whose pcp list lock word `i` is, or -1: for reports. */
export function pcpLockOwner(mem: Mem, i: number): number {
  const rel = i - (regionBase(mem, REGION) + pcpArea(mem.limits.nrPfns)) - P_LOCK;
  return rel >= 0 && rel < LIMITS.MAX_THREADS * PCP_WORDS && rel % PCP_WORDS === 0 ? rel / PCP_WORDS : -1;
}

export class PfnAllocator {
  readonly base: number;
  private readonly w: Int32Array;
  private readonly pcps: number;
  /** This thread's pcp list. */
  private readonly pcp: number;

  constructor(
    mem: Mem,
    private readonly sync: Sync,
  ) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
    this.pcps = this.base + pcpArea(mem.limits.nrPfns);
    this.pcp = this.pcps + sync.tid * PCP_WORDS;
  }

  get lockWord(): number {
    return this.base + A_LOCK;
  }

  /** The pcp list lock of thread `tid`, for reports. */
  pcpLockWord(tid: number): number {
    return this.pcps + tid * PCP_WORDS + P_LOCK;
  }

  /** Fills the free list with every pfn; only while no other thread runs. */
  initAll(nrPfns: number): void {
    // Push in reverse so that pfn 0 is handed out first: easier to read in traces.
    for (let i = 0; i < nrPfns; i++) this.w[this.base + A_STACK + i] = nrPfns - 1 - i;
    Atomics.store(this.w, this.base + A_TOP, nrPfns);
    for (let t = 0; t < LIMITS.MAX_THREADS; t++) Atomics.store(this.w, this.pcps + t * PCP_WORDS + P_COUNT, 0);
  }

  /** Returns a free pfn, or -1 when none is left (the caller reports ENOMEM). */
  alloc(): number {
    const w = this.w;
    if (Atomics.load(w, this.base + A_RESERVE) !== 0) return this.allocReserved();
    const p = this.pcp;
    // pcp_spin_trylock: only a drain from another thread can hold it; then use the zone directly.
    if (!this.sync.mutexTryLock(p + P_LOCK, LockClass.PCP)) return this.allocZone();
    let n = w[p + P_COUNT];
    if (n === 0) n = this.refill(p);
    let pfn = -1;
    if (n > 0) {
      pfn = w[p + P_LIST + n - 1];
      this.setCount(p, n - 1);
    }
    this.sync.mutexUnlock(p + P_LOCK);
    if (pfn >= 0) return pfn;
    // The zone is empty, but other threads' lists may hold pages (drain_all_pages, then retry).
    this.drainAll();
    return this.allocZone();
  }

  free(pfn: number): void {
    const w = this.w;
    const p = this.pcp;
    if (!this.sync.mutexTryLock(p + P_LOCK, LockClass.PCP)) {
      this.freeZone(pfn);
      return;
    }
    const n = w[p + P_COUNT];
    w[p + P_LIST + n] = pfn;
    this.setCount(p, n + 1);
    // free_pcppages_bulk: past pcp->high, the oldest batch goes back to the zone.
    if (n + 1 >= PCP_HIGH) this.spill(p, PCP_BATCH);
    this.sync.mutexUnlock(p + P_LOCK);
  }

  /**
   * The zone's free count, which publishes the stack below it: a write to shared state, so a
   * scheduling point of points 'shared' (Sync.sharedWrite). The zone is one object.
   */
  private setTop(top: number): void {
    this.sync.sharedWrite(this.base, this.base + A_TOP);
    Atomics.store(this.w, this.base + A_TOP, top);
  }

  /** A pcp list's count, which publishes its entries: one object per list. */
  private setCount(p: number, n: number): void {
    this.sync.sharedWrite(this.base, p);
    Atomics.store(this.w, p + P_COUNT, n);
  }

  /** Free pages, in the zone and in every pcp list. */
  freeCount(): number {
    let n = Atomics.load(this.w, this.base + A_TOP);
    for (let t = 0; t < LIMITS.MAX_THREADS; t++) n += Atomics.load(this.w, this.pcps + t * PCP_WORDS + P_COUNT);
    return n;
  }

  /** Fault injection: keep `pages` free pages out of reach (0 restores normal service). */
  setReserve(pages: number): void {
    Atomics.store(this.w, this.base + A_RESERVE, pages);
  }

  /** The free pfns of the zone, for the auditor at a quiescent point. */
  freePfns(): Int32Array {
    const top = Atomics.load(this.w, this.base + A_TOP);
    return this.w.slice(this.base + A_STACK, this.base + A_STACK + top);
  }

  /** The pfns on thread `tid`'s pcp list and whether its lock is held, for the auditor. */
  pcpList(tid: number): { pfns: Int32Array; locked: boolean } {
    const p = this.pcps + tid * PCP_WORDS;
    const n = Atomics.load(this.w, p + P_COUNT);
    return {
      pfns: this.w.slice(p + P_LIST, p + P_LIST + Math.max(0, Math.min(n, PCP_HIGH))),
      locked: Atomics.load(this.w, p + P_LOCK) !== 0,
    };
  }

  /** rmqueue_bulk: up to a batch from the zone onto the held pcp list `p`; its new count. */
  private refill(p: number): number {
    const w = this.w;
    this.sync.assertHeld(p + P_LOCK);
    this.sync.mutexLock(this.base + A_LOCK, LockClass.ZONE);
    const top = w[this.base + A_TOP];
    const n = Math.min(PCP_BATCH, top);
    // The list is a stack too: the zone's top pfn stays the next one handed out.
    for (let i = 0; i < n; i++) w[p + P_LIST + i] = w[this.base + A_STACK + top - n + i];
    this.setTop(top - n);
    this.sync.mutexUnlock(this.base + A_LOCK);
    this.setCount(p, n);
    return n;
  }

  /** free_pcppages_bulk: the `count` oldest pages of the held pcp list `p` back to the zone. */
  private spill(p: number, count: number): void {
    const w = this.w;
    this.sync.assertHeld(p + P_LOCK);
    const n = w[p + P_COUNT];
    const k = Math.min(count, n);
    this.sync.mutexLock(this.base + A_LOCK, LockClass.ZONE);
    const top = w[this.base + A_TOP];
    for (let i = 0; i < k; i++) w[this.base + A_STACK + top + i] = w[p + P_LIST + i];
    this.setTop(top + k);
    this.sync.mutexUnlock(this.base + A_LOCK);
    w.copyWithin(p + P_LIST, p + P_LIST + k, p + P_LIST + n);
    this.setCount(p, n - k);
  }

  /** drain_all_pages: every thread's pcp list back to the zone. */
  private drainAll(): void {
    for (let t = 0; t < LIMITS.MAX_THREADS; t++) {
      const p = this.pcps + t * PCP_WORDS;
      if (Atomics.load(this.w, p + P_COUNT) === 0) continue;
      this.sync.mutexLock(p + P_LOCK, LockClass.PCP);
      this.spill(p, PCP_HIGH);
      this.sync.mutexUnlock(p + P_LOCK);
    }
  }

  /** One page straight from the zone (__rmqueue under the zone lock). */
  private allocZone(reserve = 0): number {
    const w = this.w;
    this.sync.mutexLock(this.base + A_LOCK, LockClass.ZONE);
    const top = w[this.base + A_TOP];
    let pfn = -1;
    if (top > reserve) {
      pfn = w[this.base + A_STACK + top - 1];
      this.setTop(top - 1);
    }
    this.sync.mutexUnlock(this.base + A_LOCK);
    return pfn;
  }

  private freeZone(pfn: number): void {
    const w = this.w;
    this.sync.mutexLock(this.base + A_LOCK, LockClass.ZONE);
    const top = w[this.base + A_TOP];
    w[this.base + A_STACK + top] = pfn;
    this.setTop(top + 1);
    this.sync.mutexUnlock(this.base + A_LOCK);
  }

  /** With a reserve set, the free count must be exact: the pcp lists are drained first. */
  private allocReserved(): number {
    this.drainAll();
    return this.allocZone(Atomics.load(this.w, this.base + A_RESERVE));
  }
}
