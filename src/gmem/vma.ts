// The VMM process's shared mappings of guest_memfd files (struct vm_area_struct with vm_file and
// vm_pgoff), the host page table of each (one PTE word per page of the mapping that lies inside
// the file: pfn + 1, or 0), and the process's mm->mmap_lock. Owns the 'host_mappings' region.
// A present PTE holds one folio reference; whoever clears a PTE word drops it (the callers in
// mmap.ts and filemap.ts), so this module needs nothing of the page cache.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS, SandboxLimitError } from '../shm/limits.js';
import { Obj, SLAB_HEADER, Slab, SlabState, handleId } from '../shm/slab.js';
import { NO_WRITE_POINTS, WHOLE_REGION, type WritePoints } from '../shm/sync/sync.js';
import { RWSEM_WORDS } from '../shm/sync/words.js';

const H_MMAP_LOCK = 0; // RWSEM_WORDS
/** Live mappings: truncate skips its page-table walk while there are none. */
const H_LIVE = RWSEM_WORDS;
/**
 * Host accesses between reading a present PTE and letting go of its page: what a TLB shootdown
 * waits for after a zap (7.4's conversion); and how many wait for it.
 */
const H_INFLIGHT = RWSEM_WORDS + 1;
const H_INFLIGHT_WAITERS = RWSEM_WORDS + 2;
const HEADER = 16;
const REC_WORDS = 8;
const M_FILE = SLAB_HEADER + 0; // vma->vm_file (a reference)
const M_INODE = SLAB_HEADER + 1;
const M_PGOFF = SLAB_HEADER + 2; // vma->vm_pgoff
const M_NPAGES = SLAB_HEADER + 3; // the mapping's length in pages
const M_PTE_BASE = SLAB_HEADER + 4; // its page table's first word in the PTE pool
const M_PTES = SLAB_HEADER + 5; // pages of the mapping inside the file: the ones a PTE can map

const REGION = 'host_mappings';

/** PTE words of all mappings at once: as many as the filemap has slots (limits.filemapPages). */
export function declareHostMappings(lb: LayoutBuilder, filemapPages: number): void {
  if (H_INFLIGHT_WAITERS >= HEADER) throw new Error('host mappings layout overflow');
  lb.add(REGION, HEADER + LIMITS.MAX_HOST_MAPPINGS * REC_WORDS + filemapPages, 'gmem/vma.ts');
}

export interface HostMappingInfo {
  file: number;
  inode: number;
  pgoff: number;
  npages: number;
  ptes: number;
}

export class HostMappings {
  readonly base: number;
  readonly slab: Slab;
  private readonly w: Int32Array;
  private readonly pool: number;
  private readonly poolWords: number;

  constructor(
    mem: Mem,
    /** The point before each write (the kernel's view passes its Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
    this.slab = new Slab(this.w, this.base + HEADER, LIMITS.MAX_HOST_MAPPINGS, REC_WORDS, Obj.VMA, mem);
    this.pool = this.base + HEADER + LIMITS.MAX_HOST_MAPPINGS * REC_WORDS;
    this.poolWords = mem.limits.filemapPages;
  }

  /** The scheduling point before a write to mapping `h` (WHOLE_REGION: any of them). */
  private writing(h: number): void {
    this.wp.sharedWrite(this.base, h === WHOLE_REGION ? WHOLE_REGION : this.slab.at(handleId(h)));
  }

  /** mm->mmap_lock of the VMM process. */
  get mmapLockWord(): number {
    return this.base + H_MMAP_LOCK;
  }

  /**
   * A new mapping (the caller holds mmap_lock for write and a file reference for it): its
   * handle. Its page table is the first run of free PTE words that fits, all empty.
   */
  alloc(m: HostMappingInfo): number {
    if (this.slab.inUse() >= LIMITS.MAX_HOST_MAPPINGS) {
      throw new SandboxLimitError('mmap', `at most ${LIMITS.MAX_HOST_MAPPINGS} guest_memfd mappings may exist at once`);
    }
    const at = this.findPtes(m.ptes);
    if (at < 0) {
      throw new SandboxLimitError(
        'mmap',
        `the mappings' page tables may hold at most ${this.poolWords} PTEs at once (limits.filemapPages)`,
      );
    }
    this.writing(WHOLE_REGION);
    const h = this.slab.alloc();
    const b = this.slab.at(handleId(h));
    for (let k = 0; k < m.ptes; k++) Atomics.store(this.w, this.pool + at + k, 0);
    Atomics.store(this.w, b + M_FILE, m.file);
    Atomics.store(this.w, b + M_INODE, m.inode);
    Atomics.store(this.w, b + M_PGOFF, m.pgoff);
    Atomics.store(this.w, b + M_NPAGES, m.npages);
    Atomics.store(this.w, b + M_PTE_BASE, at);
    Atomics.store(this.w, b + M_PTES, m.ptes);
    Atomics.add(this.w, this.base + H_LIVE, 1);
    return h;
  }

  /** First fit among the live mappings' page tables. */
  private findPtes(n: number): number {
    const used: Array<[number, number]> = [];
    for (let id = 0; id < LIMITS.MAX_HOST_MAPPINGS; id++) {
      if (this.slab.state(id) === SlabState.FREE) continue;
      const b = this.slab.at(id);
      used.push([this.w[b + M_PTE_BASE], this.w[b + M_PTE_BASE] + this.w[b + M_PTES]]);
    }
    used.sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [s, e] of used) {
      if (s - at >= n) break;
      at = Math.max(at, e);
    }
    return at + n <= this.poolWords ? at : -1;
  }

  /** The mapping is gone (its PTEs cleared by the caller): the record is free. */
  free(h: number): void {
    this.writing(h);
    this.slab.free(h);
    Atomics.sub(this.w, this.base + H_LIVE, 1);
  }

  /** `h` names a mapping that still exists (a stale one is an unmapped address, not a kernel bug). */
  valid(h: number): boolean {
    return this.slab.valid(h);
  }
  info(h: number): HostMappingInfo {
    const b = this.slab.at(handleId(h));
    const w = this.w;
    return {
      file: Atomics.load(w, b + M_FILE),
      inode: Atomics.load(w, b + M_INODE),
      pgoff: Atomics.load(w, b + M_PGOFF),
      npages: Atomics.load(w, b + M_NPAGES),
      ptes: Atomics.load(w, b + M_PTES),
    };
  }
  /** finish_fault's set_pte: maps page `k` of `h` to `pfn` unless a racing fault did first (then false). */
  installPte(h: number, k: number, pfn: number): boolean {
    this.writing(h);
    return Atomics.compareExchange(this.w, this.pteWord(h, k), 0, pfn + 1) === 0;
  }

  /** The PTE word of page `k` of mapping `h` (k below its `ptes`). */
  pteWord(h: number, k: number): number {
    return this.pool + Atomics.load(this.w, this.slab.at(handleId(h)) + M_PTE_BASE) + k;
  }

  /** The handles of every mapping, live at the time of the scan. */
  live(): number[] {
    const out: number[] = [];
    if (Atomics.load(this.w, this.base + H_LIVE) === 0) return out;
    for (let id = 0; id < LIMITS.MAX_HOST_MAPPINGS; id++) if (this.slab.state(id) !== SlabState.FREE) out.push(this.slab.handle(id));
    return out;
  }

  /**
   * Clears every PTE that maps `pfn` (unmap_mapping_folio, which truncate and memory failure run
   * with the folio locked, so no fault maps it meanwhile): how many were cleared, each a folio
   * reference the caller must drop. A PTE word holding pfn + 1 maps this folio wherever it is.
   */
  unmapFolio(pfn: number, ino: number, index: number): number {
    if (Atomics.load(this.w, this.base + H_LIVE) === 0) return 0;
    this.writing(WHOLE_REGION);
    let n = 0;
    this.eachPteOf(ino, index, (word) => {
      if (Atomics.compareExchange(this.w, word, pfn + 1, 0) === pfn + 1) n++;
    });
    return n;
  }

  /** Calls `fn` with the PTE word of every live mapping that covers `index` of inode `ino`. */
  private eachPteOf(ino: number, index: number, fn: (word: number) => void): void {
    for (let id = 0; id < LIMITS.MAX_HOST_MAPPINGS; id++) {
      if (this.slab.state(id) === SlabState.FREE) continue;
      const b = this.slab.at(id);
      if (Atomics.load(this.w, b + M_INODE) !== ino) continue;
      const k = index - Atomics.load(this.w, b + M_PGOFF);
      if (k < 0 || k >= Atomics.load(this.w, b + M_PTES)) continue;
      fn(this.pool + Atomics.load(this.w, b + M_PTE_BASE) + k);
    }
  }

  /** The word counting host accesses in flight (see H_INFLIGHT), and its waiters'. */
  get inflightWord(): number {
    return this.base + H_INFLIGHT;
  }
  get inflightWaitersWord(): number {
    return this.base + H_INFLIGHT_WAITERS;
  }

  /**
   * Clears the PTEs of index range [start, end) of inode `ino` in every mapping
   * (unmap_mapping_pages, even_cows false): the pfns of the PTEs cleared, each a folio reference
   * the caller must drop.
   */
  unmapRange(ino: number, start: number, end: number): number[] {
    const out: number[] = [];
    if (Atomics.load(this.w, this.base + H_LIVE) === 0) return out;
    for (let id = 0; id < LIMITS.MAX_HOST_MAPPINGS; id++) {
      if (this.slab.state(id) === SlabState.FREE) continue;
      const b = this.slab.at(id);
      if (Atomics.load(this.w, b + M_INODE) !== ino) continue;
      const pgoff = Atomics.load(this.w, b + M_PGOFF);
      const lo = Math.max(0, start - pgoff);
      const hi = Math.min(Atomics.load(this.w, b + M_PTES), end - pgoff);
      for (let k = lo; k < hi; k++) {
        const v = Atomics.exchange(this.w, this.pool + Atomics.load(this.w, b + M_PTE_BASE) + k, 0);
        if (v !== 0) out.push(v - 1);
      }
    }
    return out;
  }

  /** folio_mapped for the folio `pfn` at `index` of inode `ino`: whether any PTE maps it. */
  mapped(pfn: number, ino: number, index: number): boolean {
    return this.mapCount(pfn, ino, index) > 0;
  }

  /** folio_mapcount for the folio `pfn` at `index` of inode `ino`: how many PTEs map it. */
  mapCount(pfn: number, ino: number, index: number): number {
    if (Atomics.load(this.w, this.base + H_LIVE) === 0) return 0;
    let n = 0;
    this.eachPteOf(ino, index, (word) => {
      if (Atomics.load(this.w, word) === pfn + 1) n++;
    });
    return n;
  }

  /** Present PTEs per pfn over every mapping (each one a folio reference), for the auditor at a quiescent point. */
  mapCounts(nrPfns: number): Uint16Array {
    const out = new Uint16Array(nrPfns);
    for (const h of this.live()) {
      const { ptes } = this.info(h);
      for (let k = 0; k < ptes; k++) {
        const v = Atomics.load(this.w, this.pteWord(h, k));
        if (v > 0 && v <= nrPfns) out[v - 1]++;
      }
    }
    return out;
  }

  /**
   * Every present PTE of every live mapping, until `visit` returns true (then true): the
   * mapping's handle, the page `k` in it, its inode and file index, and the pfn. Plain reads:
   * for a reader nobody writes under (a quiescent point, or a controlled run's running actor).
   */
  scanPtes(visit: (map: number, k: number, ino: number, index: number, pfn: number) => boolean): boolean {
    const w = this.w;
    if (w[this.base + H_LIVE] === 0) return false;
    for (let id = 0; id < LIMITS.MAX_HOST_MAPPINGS; id++) {
      if (this.slab.state(id) === SlabState.FREE) continue;
      const b = this.slab.at(id);
      const ptes = this.pool + w[b + M_PTE_BASE];
      for (let k = 0; k < w[b + M_PTES]; k++) {
        const v = w[ptes + k];
        if (v !== 0 && visit(this.slab.handle(id), k, w[b + M_INODE], w[b + M_PGOFF] + k, v - 1)) return true;
      }
    }
    return false;
  }

  /** Clears every PTE of mapping `h` (zap_page_range of munmap): the pfns whose references the caller drops. */
  zapAll(h: number): number[] {
    const { ptes } = this.info(h);
    this.writing(h);
    const out: number[] = [];
    for (let k = 0; k < ptes; k++) {
      const v = Atomics.exchange(this.w, this.pteWord(h, k), 0);
      if (v !== 0) out.push(v - 1);
    }
    return out;
  }
}
