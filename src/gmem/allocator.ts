// The host pfn allocator shared by all threads: a stack of free pfns under one mutex.
// Owns the 'pfn_allocator' region.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LockClass } from '../shm/stats.js';
import type { Sync } from '../shm/sync.js';

const A_LOCK = 0;
const A_TOP = 1;
/** Fault injection: allocations fail while the free count is at or below this reserve. */
const A_RESERVE = 2;
const A_STACK = 16;

const REGION = 'pfn_allocator';

export function declareAllocator(lb: LayoutBuilder, nrPfns: number): void {
  lb.add(REGION, A_STACK + nrPfns, 'gmem/allocator.ts');
}

/** The allocator's lock word, for reports. */
export function allocatorLockWord(mem: Mem): number {
  return regionBase(mem, REGION) + A_LOCK;
}

export class PfnAllocator {
  readonly base: number;
  private readonly w: Int32Array;

  constructor(
    mem: Mem,
    private readonly sync: Sync,
  ) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
  }

  get lockWord(): number {
    return this.base + A_LOCK;
  }

  /** Fills the free list with every pfn; only while no other thread runs. */
  initAll(nrPfns: number): void {
    // Push in reverse so that pfn 0 is handed out first: easier to read in traces.
    for (let i = 0; i < nrPfns; i++) this.w[this.base + A_STACK + i] = nrPfns - 1 - i;
    Atomics.store(this.w, this.base + A_TOP, nrPfns);
  }

  /** Returns a free pfn, or -1 when none is left (the caller reports ENOMEM). */
  alloc(): number {
    const w = this.w;
    this.sync.mutexLock(this.base + A_LOCK, LockClass.ALLOCATOR);
    const top = w[this.base + A_TOP];
    let pfn = -1;
    if (top > Atomics.load(w, this.base + A_RESERVE)) {
      pfn = w[this.base + A_STACK + top - 1];
      Atomics.store(w, this.base + A_TOP, top - 1);
    }
    this.sync.mutexUnlock(this.base + A_LOCK);
    return pfn;
  }

  free(pfn: number): void {
    const w = this.w;
    this.sync.mutexLock(this.base + A_LOCK, LockClass.ALLOCATOR);
    const top = w[this.base + A_TOP];
    w[this.base + A_STACK + top] = pfn;
    Atomics.store(w, this.base + A_TOP, top + 1);
    this.sync.mutexUnlock(this.base + A_LOCK);
  }

  freeCount(): number {
    return Atomics.load(this.w, this.base + A_TOP);
  }

  /** Fault injection: keep `pages` free pages out of reach (0 restores normal service). */
  setReserve(pages: number): void {
    Atomics.store(this.w, this.base + A_RESERVE, pages);
  }

  /** The free pfns, for the auditor at a quiescent point. */
  freePfns(): Int32Array {
    const top = Atomics.load(this.w, this.base + A_TOP);
    return this.w.slice(this.base + A_STACK, this.base + A_STACK + top);
  }
}
