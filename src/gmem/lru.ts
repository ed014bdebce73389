// mm/swap.c's per-CPU lru_add batches, as far as guest_memfd meets them: a folio added to the
// page cache goes to its thread's batch with a reference (folio_add_lru), which stays until the
// batch fills and moves to the LRU, or until lru_add_drain_all empties every batch. Only 7.4's
// conversion looks at a folio's reference count, so the model keeps the batches only where a
// version has that check (earlier versions have the same batches, which change nothing the model
// shows there). Each slot word holds pfn + 1 or 0; whoever empties a slot drops its reference,
// so a drain by another thread (the work lru_add_drain_all queues on each CPU) needs no lock.
// Owns the 'lru_add' region; folio_add_lru and the drains are with the page cache (filemap.ts).

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { NO_WRITE_POINTS, type WritePoints } from '../shm/sync/sync.js';

/** FOLIO_BATCH_SIZE (include/linux/pagevec.h): a batch moves to the LRU once it holds this many. */
export const LRU_BATCH = 31;
/** Words per thread: the batch rounded up to a cache line's multiple. */
const THREAD_WORDS = 32;

const REGION = 'lru_add';

export function declareLruAdd(lb: LayoutBuilder, maxThreads: number): void {
  lb.add(REGION, maxThreads * THREAD_WORDS, 'gmem/lru.ts');
}

export class LruBatches {
  readonly base: number;
  private readonly w: Int32Array;
  private readonly threads: number;

  constructor(
    mem: Mem,
    /** The point before each write (the kernel's view passes its Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
    this.threads = mem.limits.maxThreads;
  }

  slotWord(tid: number, k: number): number {
    return this.base + tid * THREAD_WORDS + k;
  }
  /** Puts pfn into free slot k of thread tid's batch: false if the slot was taken meanwhile. */
  fill(tid: number, k: number, pfn: number): boolean {
    const word = this.slotWord(tid, k);
    this.wp.sharedWrite(this.base, word);
    return Atomics.compareExchange(this.w, word, 0, pfn + 1) === 0;
  }
  /** Empties slot k of thread tid's batch: the pfn whose reference the caller now drops, or -1. */
  take(tid: number, k: number): number {
    const word = this.slotWord(tid, k);
    if (Atomics.load(this.w, word) === 0) return -1;
    this.wp.sharedWrite(this.base, word);
    return Atomics.exchange(this.w, word, 0) - 1;
  }
  get maxThreads(): number {
    return this.threads;
  }

  /** References the batches hold on `pfn` now (plain reads: a checker's, not the kernel's). */
  refsOf(pfn: number): number {
    let n = 0;
    for (let t = 0; t < this.threads; t++)
      for (let k = 0; k < LRU_BATCH; k++) if (Atomics.load(this.w, this.slotWord(t, k)) === pfn + 1) n++;
    return n;
  }

  /** References the batches hold per pfn (for the auditor at a quiescent point). */
  refCounts(nrPfns: number): Uint16Array {
    const out = new Uint16Array(nrPfns);
    for (let t = 0; t < this.threads; t++) {
      for (let k = 0; k < LRU_BATCH; k++) {
        const v = Atomics.load(this.w, this.slotWord(t, k));
        if (v > 0 && v <= nrPfns) out[v - 1]++;
      }
    }
    return out;
  }
}
