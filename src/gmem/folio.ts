// struct folio, one per host pfn (order 0 only): lock, flags, refcount, owning inode and index.
// Owns the 'folios' region. The pfn allocator (free list) lives in allocator.ts.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { NO_WRITE_POINTS, type WritePoints } from '../shm/sync/sync.js';

/** One cache line per folio: neighbouring pfns go to different vCPUs, which must not share lines. */
export const FOLIO_WORDS = 16;
const F_LOCK = 0;
const F_FLAGS = 1;
const F_REF = 2;
/** Inode id + 1 while the folio is in that inode's filemap, else 0 (folio->mapping). */
const F_INODE = 3;
const F_INDEX = 4;
/** Bumped on every allocation, so the auditor can tell one life of a pfn from the next. */
const F_GEN = 5;
/** folio->_pincount: FOLL_PIN references (pin_user_pages), each also one in F_REF. */
const F_PINCOUNT = 6;

/** folio_test_uptodate: cleared (and, per policy, registered) with the guest. */
export const PG_UPTODATE = 1;
export const PG_HWPOISON = 2;
/** Not a kernel flag: the pfn is in the free list. Lets the auditor see use after free. */
export const PG_FREE = 4;
/** Not a kernel flag: created while a PUNCH_HOLE over its index was in flight. */
export const PG_PUNCH_RACE = 8;

/** Byte written over every freed page, so stale host data is visible to a guest that reads it. */
export const HOST_PATTERN = 0xa5;

const REGION = 'folios';

export function declareFolios(lb: LayoutBuilder, nrPfns: number): void {
  lb.add(REGION, nrPfns * FOLIO_WORDS, 'gmem/folio.ts');
}

export class Folios {
  readonly base: number;
  readonly nrPfns: number;
  private readonly w: Int32Array;
  private readonly host: Uint8Array;

  constructor(
    mem: Mem,
    /** The point before each write (the kernel's views pass their Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.nrPfns = mem.limits.nrPfns;
    this.w = mem.w;
    this.host = mem.host;
  }

  /** The scheduling point before a write to pfn's struct folio (points 'shared'). */
  private writing(pfn: number): void {
    this.wp.sharedWrite(this.base, this.base + pfn * FOLIO_WORDS);
  }

  /** Word index of the folio lock (for Sync.mutexLock). */
  lockWord(pfn: number): number {
    return this.base + pfn * FOLIO_WORDS + F_LOCK;
  }
  refWord(pfn: number): number {
    return this.base + pfn * FOLIO_WORDS + F_REF;
  }
  ownsWord(i: number): boolean {
    return i >= this.base && i < this.base + this.nrPfns * FOLIO_WORDS;
  }
  pfnOfWord(i: number): number {
    return Math.floor((i - this.base) / FOLIO_WORDS);
  }

  flags(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * FOLIO_WORDS + F_FLAGS);
  }
  test(pfn: number, flag: number): boolean {
    return (this.flags(pfn) & flag) !== 0;
  }
  set(pfn: number, flag: number): void {
    this.writing(pfn);
    Atomics.or(this.w, this.base + pfn * FOLIO_WORDS + F_FLAGS, flag);
  }
  clear(pfn: number, flag: number): void {
    this.writing(pfn);
    Atomics.and(this.w, this.base + pfn * FOLIO_WORDS + F_FLAGS, ~flag);
  }
  refcount(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * FOLIO_WORDS + F_REF);
  }
  /** Inode id the folio is cached in, or -1 (folio->mapping == NULL). */
  inode(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * FOLIO_WORDS + F_INODE) - 1;
  }
  index(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * FOLIO_WORDS + F_INDEX);
  }
  generation(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * FOLIO_WORDS + F_GEN);
  }
  lockHolder(pfn: number): number {
    return (Atomics.load(this.w, this.lockWord(pfn)) & ((1 << 30) - 1)) - 1;
  }

  /** Starts a new life of a pfn taken from the allocator: two references (cache + caller). */
  initNew(pfn: number, inode: number, index: number, flags: number): void {
    this.writing(pfn);
    const b = this.base + pfn * FOLIO_WORDS;
    Atomics.store(this.w, b + F_FLAGS, flags);
    Atomics.store(this.w, b + F_REF, 2);
    Atomics.store(this.w, b + F_INODE, inode + 1);
    Atomics.store(this.w, b + F_INDEX, index);
    Atomics.store(this.w, b + F_PINCOUNT, 0);
    Atomics.add(this.w, b + F_GEN, 1);
  }

  /** folio_maybe_dma_pinned's count: pins taken by pin_user_pages and not yet unpinned. */
  pincount(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * FOLIO_WORDS + F_PINCOUNT);
  }
  /** A FOLL_PIN reference: +1 pin (the caller holds the folio reference that comes with it). */
  pin(pfn: number): void {
    Atomics.add(this.w, this.base + pfn * FOLIO_WORDS + F_PINCOUNT, 1);
  }
  /** unpin_user_page's pin count; the caller then drops the folio reference. */
  unpin(pfn: number): void {
    if (Atomics.sub(this.w, this.base + pfn * FOLIO_WORDS + F_PINCOUNT, 1) <= 0)
      throw new Error(`unpin_user_page: pfn ${pfn} is not pinned`);
  }

  /** folio->mapping = NULL: removed from its filemap. */
  detach(pfn: number): void {
    this.writing(pfn);
    Atomics.store(this.w, this.base + pfn * FOLIO_WORDS + F_INODE, 0);
  }

  /** folio_try_get: takes a reference unless the folio is already on its way to being freed. */
  tryGet(pfn: number): boolean {
    this.writing(pfn);
    const i = this.base + pfn * FOLIO_WORDS + F_REF;
    for (let r = Atomics.load(this.w, i); r > 0;) {
      const prev = Atomics.compareExchange(this.w, i, r, r + 1);
      if (prev === r) return true;
      r = prev;
    }
    return false;
  }

  /** Drops a reference; returns true when it was the last one and the caller must free the pfn. */
  putTestZero(pfn: number): boolean {
    this.writing(pfn);
    const left = Atomics.sub(this.w, this.base + pfn * FOLIO_WORDS + F_REF, 1) - 1;
    if (left < 0) throw new Error(`folio_put: pfn ${pfn} refcount underflow`);
    return left === 0;
  }

  markFree(pfn: number): void {
    this.writing(pfn);
    const b = this.base + pfn * FOLIO_WORDS;
    Atomics.store(this.w, b + F_REF, 0);
    Atomics.store(this.w, b + F_FLAGS, PG_FREE);
    Atomics.store(this.w, b + F_INODE, 0);
  }

  /** The page's bytes (a view, not a copy). */
  page(pfn: number): Uint8Array {
    return this.host.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  }
}
