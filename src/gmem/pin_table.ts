// The device's table of pages it pinned through the VMM's mapping (gup.ts pins and unpins):
// a record each, pfn + 1 (0 when free) and a generation so that a stale handle is told apart.
// Owns the 'gup_pins' region.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { NO_WRITE_POINTS, WHOLE_REGION, type WritePoints } from '../shm/sync/sync.js';

/** Pages the device may hold pinned at once. */
export const MAX_PINS = 64;
const REC_WORDS = 2;
const R_PFN = 0;
const R_GEN = 1;
const ID_BITS = 8;

const REGION = 'gup_pins';

export function declareGupPins(lb: LayoutBuilder): void {
  lb.add(REGION, MAX_PINS * REC_WORDS, 'gmem/pin_table.ts');
}

export class GupPins {
  readonly base: number;
  private readonly w: Int32Array;

  constructor(
    mem: Mem,
    /** The point before each write (the kernel's view passes its Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
  }
  private at(id: number): number {
    return this.base + id * REC_WORDS;
  }
  /** A record for `pfn`: its handle, or -1 when all MAX_PINS are taken. */
  claim(pfn: number): number {
    this.wp.sharedWrite(this.base, WHOLE_REGION);
    for (let id = 0; id < MAX_PINS; id++) {
      const b = this.at(id);
      if (Atomics.compareExchange(this.w, b + R_PFN, 0, pfn + 1) === 0) return (Atomics.load(this.w, b + R_GEN) << ID_BITS) | id;
    }
    return -1;
  }
  /** Frees the record `h` names: its pfn, or -1 for a handle that names no pin (stale or never made). */
  release(h: number): number {
    const id = h & ((1 << ID_BITS) - 1);
    if (h < 0 || id >= MAX_PINS) return -1;
    const b = this.at(id);
    if (Atomics.load(this.w, b + R_GEN) !== h >>> ID_BITS) return -1;
    this.wp.sharedWrite(this.base, b);
    const v = Atomics.exchange(this.w, b + R_PFN, 0);
    if (v === 0) return -1;
    Atomics.add(this.w, b + R_GEN, 1);
    return v - 1;
  }
  /** The pfn pin `h` holds, or -1 if it names no pin held now. */
  pfnOf(h: number): number {
    const id = h & ((1 << ID_BITS) - 1);
    if (h < 0 || id >= MAX_PINS || Atomics.load(this.w, this.at(id) + R_GEN) !== h >>> ID_BITS) return -1;
    return Atomics.load(this.w, this.at(id) + R_PFN) - 1;
  }
  /** The handles of every pin held now. */
  live(): number[] {
    const out: number[] = [];
    for (let id = 0; id < MAX_PINS; id++) {
      if (Atomics.load(this.w, this.at(id) + R_PFN) !== 0) out.push((Atomics.load(this.w, this.at(id) + R_GEN) << ID_BITS) | id);
    }
    return out;
  }
}
