// The words of the sleeping locks and of SRCU, as every Sync reads them: a mutex is one word,
// a read/write semaphore RWSEM_WORDS, an srcu_struct srcuWords(maxThreads). The owners of the
// regions that hold locks (inodes, VMs, folios) size them with these; only the Sync
// implementations read their insides.

/** Mutex word: 0 = free, else holder tid + 1, with WAITERS set while sleepers may exist. */
export const WAITERS = 1 << 30;
export const OWNER_MASK = WAITERS - 1;

/** Read/write semaphore: RWSEM_WORDS words. STATE is reader count or WRITER. */
export const RWSEM_WORDS = 8;
export const RW_STATE = 0;
export const RW_SLEEPERS = 1;
export const RW_WRITERS_WAITING = 2;
export const RW_OWNER = 3;
export const RW_SEQ = 4;
export const WRITER = 1 << 30;

/**
 * SRCU (struct srcu_struct): a grace-period counter, a count of sleeping updaters, then one
 * cache line per thread holding that thread's read section: 0 outside, else
 * ((grace period seen at entry + 1) << SRCU_DEPTH_BITS) | nesting depth. A reader writes only
 * its own line; synchronize_srcu waits for every line whose section began before it did.
 */
export const SRCU_GP = 0;
export const SRCU_SLEEPERS = 1;
const SRCU_HEADER = 16;
const SRCU_LINE = 16;
const SRCU_DEPTH_BITS = 4;
const SRCU_DEPTH_MASK = (1 << SRCU_DEPTH_BITS) - 1;
/** Words of one srcu_struct for a sandbox of `maxThreads` threads. */
export function srcuWords(maxThreads: number): number {
  return SRCU_HEADER + maxThreads * SRCU_LINE;
}
/** The word holding thread `tid`'s read section of the srcu_struct at `srcu`. */
export function srcuReaderWord(srcu: number, tid: number): number {
  return srcu + SRCU_HEADER + tid * SRCU_LINE;
}
/** Which thread's reader word `i` is, relative to an srcu_struct base, or -1. */
export function srcuReaderOf(srcu: number, maxThreads: number, i: number): number {
  const rel = i - srcu - SRCU_HEADER;
  if (rel < 0 || rel >= maxThreads * SRCU_LINE || rel % SRCU_LINE !== 0) return -1;
  return rel / SRCU_LINE;
}
/** The grace period a reader word's section began in (its value), for reports. */
export function srcuReaderSince(value: number): number {
  return (value >>> SRCU_DEPTH_BITS) - 1;
}

// srcu_read_lock's bookkeeping, shared by both modes.
export function srcuEnter(w: Int32Array, srcu: number, tid: number): void {
  const r = srcuReaderWord(srcu, tid);
  const v = w[r];
  if (v !== 0) {
    if ((v & SRCU_DEPTH_MASK) === SRCU_DEPTH_MASK) throw new Error('srcu_read_lock nested too deep');
    Atomics.store(w, r, v + 1);
    return;
  }
  // A sequentially consistent store, then the caller's loads of what SRCU protects: either an
  // updater's scan sees this section, or this section sees what the updater published first.
  Atomics.store(w, r, ((Atomics.load(w, srcu + SRCU_GP) + 1) << SRCU_DEPTH_BITS) | 1);
}

// srcu_read_unlock's bookkeeping; wakes a sleeping updater when the outermost section ends.
export function srcuExit(w: Int32Array, srcu: number, tid: number): void {
  const r = srcuReaderWord(srcu, tid);
  const v = w[r];
  if ((v & SRCU_DEPTH_MASK) === 0) throw new Error(`srcu_read_unlock by thread ${tid} outside a read section`);
  if ((v & SRCU_DEPTH_MASK) > 1) {
    Atomics.store(w, r, v - 1);
    return;
  }
  Atomics.store(w, r, 0);
  if (Atomics.load(w, srcu + SRCU_SLEEPERS) > 0) Atomics.notify(w, r);
}

/** Starts a grace period: returns its number, which synchronize_srcu compares sections with. */
export function srcuStartGp(w: Int32Array, srcu: number, tid: number): number {
  if (w[srcuReaderWord(srcu, tid)] !== 0)
    throw new Error(`synchronize_srcu by thread ${tid} inside its own read section: it would wait for itself`);
  return Atomics.add(w, srcu + SRCU_GP, 1) + 1;
}

/** A reader word's section began before grace period `gp` was started. */
export function srcuBefore(v: number, gp: number): boolean {
  return v !== 0 && v >>> SRCU_DEPTH_BITS <= gp;
}

export function holderName(word: number): string {
  const owner = word & OWNER_MASK;
  return owner === 0 ? 'nobody' : `thread ${owner - 1}`;
}
