// The stage-2 page table per VM, one SPTE per gfn (the TDP MMU's leaf entries).
// Owns the 'sptes' region. An SPTE is frame + 1, with SPTE_PRIVATE for a guest_memfd pfn; a
// shared SPTE's frame is a page of VMM userspace memory, or (a GMEM_ONLY slot's shared page,
// 6.18) a guest_memfd pfn offset by GMEM_SHARED_FRAME: the model keeps host and VMM memory in
// two buffers, where the kernel has one physical address space.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { NO_WRITE_POINTS, type WritePoints } from '../shm/sync/sync.js';

export const SPTE_PRIVATE = 1 << 30;
/** Not writable: the SPTE of a READONLY memslot; a guest write to it faults (and is emulated MMIO). */
export const SPTE_READONLY = 1 << 29;
const FRAME_MASK = SPTE_READONLY - 1;

const REGION = 'sptes';

export function declareSptes(lb: LayoutBuilder, maxVms: number, gfnsPerVm: number): void {
  lb.add(REGION, maxVms * gfnsPerVm, 'kvm/spte.ts');
}

/** Shared frames at and above this are guest_memfd pfns (above every userspace page and below the frame mask). */
export const GMEM_SHARED_FRAME = 1 << 23;
/** The shared frame of guest_memfd pfn `pfn`. */
export function gmemSharedFrame(pfn: number): number {
  return pfn + GMEM_SHARED_FRAME;
}

export function spteFrame(spte: number): number {
  return (spte & FRAME_MASK) - 1;
}
export function sptePrivate(spte: number): boolean {
  return (spte & SPTE_PRIVATE) !== 0;
}
export function makeSpte(frame: number, priv: boolean, readonly = false): number {
  return (frame + 1) | (priv ? SPTE_PRIVATE : 0) | (readonly ? SPTE_READONLY : 0);
}
export function spteWritable(spte: number): boolean {
  return (spte & SPTE_READONLY) === 0;
}

export class Sptes {
  readonly base: number;
  readonly gfnsPerVm: number;
  readonly w: Int32Array;

  constructor(
    mem: Mem,
    /** The point before each write (the kernel's views pass their Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.gfnsPerVm = mem.limits.gfnsPerVm;
    this.w = mem.w;
  }

  /** Word of (vm, gfn): callers check gfn is in range first. */
  word(vm: number, gfn: number): number {
    return this.base + vm * this.gfnsPerVm + gfn;
  }
  get(vm: number, gfn: number): number {
    if (gfn < 0 || gfn >= this.gfnsPerVm) return 0;
    return Atomics.load(this.w, this.base + vm * this.gfnsPerVm + gfn);
  }
  /**
   * The first gfn at or after `from` with a present SPTE in `vm` (-1: none). Plain reads: for a
   * reader nobody writes under (a quiescent point, or the token holder of a controlled run).
   */
  nextPresent(vm: number, from: number): number {
    const b = this.base + vm * this.gfnsPerVm;
    for (let gfn = from; gfn < this.gfnsPerVm; gfn++) if (this.w[b + gfn] !== 0) return gfn;
    return -1;
  }
  set(vm: number, gfn: number, spte: number): void {
    // One object per VM, as a zap writes a range.
    this.wp.sharedWrite(this.base, this.base + vm * this.gfnsPerVm);
    Atomics.store(this.w, this.base + vm * this.gfnsPerVm + gfn, spte);
  }
  /** Zaps [start, end); returns how many were present. Caller holds mmu_lock for write. */
  zap(vm: number, start: number, end: number): number {
    const b = this.base + vm * this.gfnsPerVm;
    this.wp.sharedWrite(this.base, b);
    const hi = Math.min(end, this.gfnsPerVm);
    let n = 0;
    for (let g = Math.max(0, start); g < hi; g++) {
      if (Atomics.load(this.w, b + g) !== 0) {
        Atomics.store(this.w, b + g, 0);
        n++;
      }
    }
    return n;
  }
}
