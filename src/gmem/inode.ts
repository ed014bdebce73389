// guest_memfd inodes: size, filemap (index -> pfn), invalidate lock, and the list of gmem files
// (newest first, as list_add leaves it). Owns the 'gmem_inodes' and 'filemap' regions.

import { NO_WRITE_POINTS, type Sync, WHOLE_REGION, type WritePoints } from '../shm/sync/sync.js';
import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';
import { RWSEM_WORDS } from '../shm/sync/words.js';

const INODE_WORDS = 32;
const I_STATE = 0; // 0 free, 1 live
const I_SIZE_PAGES = 1;
const I_FILEMAP_BASE = 2;
/** Filemap slots reserved for this inode slot (kept when the slot is reused by a smaller inode). */
const I_FILEMAP_CAP = 3;
const I_NFILES = 4;
const I_FILES = 5; // MAX_FILES_PER_INODE ids, newest first
/** The KVM_CREATE_GUEST_MEMFD flags (inode->i_private at 6.18; gmem_inode.flags from b4217c8b827c). */
const I_FLAGS = 13;
/** The index range of the PUNCH_HOLE in flight (one at a time: it holds the invalidate lock). */
const I_PUNCH_START = 14;
const I_PUNCH_END = 15;
const I_INVALIDATE_LOCK = 16; // RWSEM_WORDS
const HEADER_WORDS = 16;
const H_FILEMAP_NEXT = 0;
const H_LOCK = 1; // serialises create/link/release bookkeeping (a stand-in for the VFS's own locks)

const INODES = 'gmem_inodes';
const FILEMAP = 'filemap';

export function declareInodes(lb: LayoutBuilder, filemapPages: number): void {
  lb.add(INODES, HEADER_WORDS + LIMITS.MAX_INODES * INODE_WORDS, 'gmem/inode.ts');
  lb.add(FILEMAP, filemapPages, 'gmem/inode.ts');
}

export class Inodes {
  readonly base: number;
  readonly filemapBase: number;
  readonly filemapCap: number;
  private readonly w: Int32Array;

  constructor(
    mem: Mem,
    /** The point before each write (the kernel's views pass their Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, INODES);
    this.filemapBase = regionBase(mem, FILEMAP);
    this.filemapCap = mem.limits.filemapPages;
    this.w = mem.w;
    if (I_INVALIDATE_LOCK + RWSEM_WORDS > INODE_WORDS || I_FILES + LIMITS.MAX_FILES_PER_INODE > I_FLAGS)
      throw new Error('inode layout overflow');
  }

  /** The scheduling point before a write to inode `ino` (WHOLE_REGION: the table). */
  private writing(ino: number): void {
    this.wp.sharedWrite(this.base, ino === WHOLE_REGION ? WHOLE_REGION : this.at(ino));
  }

  private at(ino: number): number {
    return this.base + HEADER_WORDS + ino * INODE_WORDS;
  }

  get tableLockWord(): number {
    return this.base + H_LOCK;
  }
  invalidateLockWord(ino: number): number {
    return this.at(ino) + I_INVALIDATE_LOCK;
  }
  /** Which inode's invalidate lock `i` is, or -1. */
  inodeOfLockWord(i: number): number {
    const rel = i - this.base - HEADER_WORDS;
    if (rel < 0 || rel >= LIMITS.MAX_INODES * INODE_WORDS) return -1;
    return rel % INODE_WORDS === I_INVALIDATE_LOCK ? Math.floor(rel / INODE_WORDS) : -1;
  }

  live(ino: number): boolean {
    return ino >= 0 && ino < LIMITS.MAX_INODES && Atomics.load(this.w, this.at(ino) + I_STATE) === 1;
  }
  sizePages(ino: number): number {
    return Atomics.load(this.w, this.at(ino) + I_SIZE_PAGES);
  }
  /** The flags the inode was created with (GUEST_MEMFD_FLAG_*). */
  flags(ino: number): number {
    return Atomics.load(this.w, this.at(ino) + I_FLAGS);
  }

  /**
   * Allocates an inode of `pages` pages; returns its id, or a string naming the limit hit.
   * Filemap slots of a dead inode are reused first fit.
   */
  create(pages: number, sync: Sync, flags = 0): number | string {
    const w = this.w;
    // The caller holds the table lock.
    sync.assertHeld(this.tableLockWord);
    this.writing(WHOLE_REGION);
    let slot = -1;
    let reuse = -1;
    for (let i = 0; i < LIMITS.MAX_INODES; i++) {
      const b = this.at(i);
      if (w[b + I_STATE] !== 0) continue;
      if (w[b + I_FILEMAP_CAP] >= pages && (reuse < 0 || w[b + I_FILEMAP_CAP] < w[this.at(reuse) + I_FILEMAP_CAP])) reuse = i;
      if (slot < 0 && w[b + I_FILEMAP_CAP] === 0) slot = i;
    }
    const hdr = this.base + H_FILEMAP_NEXT;
    if (reuse < 0) {
      if (slot < 0) return `at most ${LIMITS.MAX_INODES} guest_memfd inodes may be live at once`;
      if (w[hdr] + pages > this.filemapCap) {
        return `guest_memfd sizes over the sandbox's life may total at most ${this.filemapCap} pages (limits.filemapPages); ${this.filemapCap - w[hdr]} left`;
      }
      const b = this.at(slot);
      w[b + I_FILEMAP_BASE] = w[hdr];
      w[b + I_FILEMAP_CAP] = pages;
      w[hdr] += pages;
    } else {
      slot = reuse;
    }
    const b = this.at(slot);
    for (let k = 0; k < pages; k++) Atomics.store(w, this.filemapBase + w[b + I_FILEMAP_BASE] + k, 0);
    w[b + I_SIZE_PAGES] = pages;
    w[b + I_NFILES] = 0;
    Atomics.store(w, b + I_FLAGS, flags);
    Atomics.store(w, b + I_PUNCH_START, 0);
    Atomics.store(w, b + I_PUNCH_END, 0);
    for (let k = 0; k < RWSEM_WORDS; k++) Atomics.store(w, b + I_INVALIDATE_LOCK + k, 0);
    Atomics.store(w, b + I_STATE, 1);
    return slot;
  }

  destroy(ino: number): void {
    this.writing(WHOLE_REGION);
    Atomics.store(this.w, this.at(ino) + I_STATE, 0);
  }

  /** Where the inode's indices start among the filemap's slots (regions kept per index use the same offsets). */
  filemapOffset(ino: number): number {
    return Atomics.load(this.w, this.at(ino) + I_FILEMAP_BASE);
  }
  /** The filemap word of `index` (value: pfn + 1, or 0 for a hole). */
  slotWord(ino: number, index: number): number {
    return this.filemapBase + this.w[this.at(ino) + I_FILEMAP_BASE] + index;
  }
  /**
   * __filemap_add_folio's store into the page cache: pfn at `index` if the index is a hole (one
   * compare-and-swap); false when another folio got there first.
   */
  filemapInsert(ino: number, index: number, pfn: number): boolean {
    const slot = this.slotWord(ino, index);
    this.wp.sharedWrite(this.filemapBase, slot);
    return Atomics.compareExchange(this.w, slot, 0, pfn + 1) === 0;
  }
  /** __filemap_remove_folio's store: the index becomes a hole. */
  filemapDelete(ino: number, index: number): void {
    const slot = this.slotWord(ino, index);
    this.wp.sharedWrite(this.filemapBase, slot);
    Atomics.store(this.w, slot, 0);
  }
  /** filemap lookup without a reference: pfn or -1. */
  peek(ino: number, index: number): number {
    return Atomics.load(this.w, this.slotWord(ino, index)) - 1;
  }

  nfiles(ino: number): number {
    return Atomics.load(this.w, this.at(ino) + I_NFILES);
  }
  /** The k-th file in list order (newest first). */
  file(ino: number, k: number): number {
    return Atomics.load(this.w, this.at(ino) + I_FILES + k);
  }
  /** list_add: the new file goes first. Returns false when the inode's list is full. */
  addFile(ino: number, file: number): boolean {
    this.writing(ino);
    const b = this.at(ino);
    const n = this.w[b + I_NFILES];
    if (n >= LIMITS.MAX_FILES_PER_INODE) return false;
    for (let k = n; k > 0; k--) Atomics.store(this.w, b + I_FILES + k, this.w[b + I_FILES + k - 1]);
    Atomics.store(this.w, b + I_FILES, file);
    Atomics.store(this.w, b + I_NFILES, n + 1);
    return true;
  }
  /** list_del; returns the files left. */
  removeFile(ino: number, file: number): number {
    this.writing(ino);
    const b = this.at(ino);
    const n = this.w[b + I_NFILES];
    let k = 0;
    while (k < n && this.w[b + I_FILES + k] !== file) k++;
    if (k === n) throw new Error(`inode ${ino} has no file ${file}`);
    for (; k < n - 1; k++) Atomics.store(this.w, b + I_FILES + k, this.w[b + I_FILES + k + 1]);
    Atomics.store(this.w, b + I_NFILES, n - 1);
    return n - 1;
  }

  punchBegin(ino: number, start: number, end: number): void {
    this.writing(ino);
    Atomics.store(this.w, this.at(ino) + I_PUNCH_START, start);
    Atomics.store(this.w, this.at(ino) + I_PUNCH_END, end);
  }
  punchEnd(ino: number): void {
    this.writing(ino);
    Atomics.store(this.w, this.at(ino) + I_PUNCH_END, 0);
    Atomics.store(this.w, this.at(ino) + I_PUNCH_START, 0);
  }
  /** True while a PUNCH_HOLE over `index` is between its invalidate begin and end. */
  punchCovers(ino: number, index: number): boolean {
    const b = this.at(ino);
    return index >= Atomics.load(this.w, b + I_PUNCH_START) && index < Atomics.load(this.w, b + I_PUNCH_END);
  }
}
