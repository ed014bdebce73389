// The Reverse Map Table: one entry per host pfn. Owns the 'rmp' region. Written only by the
// firmware (and, for PVALIDATE, the CPU acting for the guest); read directly by everyone else.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import type { RmpEntry } from '../kvm/psp.js';

const RMP_WORDS = 4;
/** Flags in the low byte, ASID above them: the hardware check reads both with one load. */
const R_FLAGS_ASID = 0;
const R_GFN = 1;
const ASID_SHIFT = 8;
const FLAG_BITS = (1 << ASID_SHIFT) - 1;

export const RMP_ASSIGNED = 1;
export const RMP_VALIDATED = 2;
export const RMP_IMMUTABLE = 4;

const REGION = 'rmp';

export function declareRmp(lb: LayoutBuilder, nrPfns: number): void {
  lb.add(REGION, nrPfns * RMP_WORDS, 'firmware/rmp.ts');
}

export class Rmp {
  readonly base: number;
  readonly nrPfns: number;
  private readonly w: Int32Array;

  constructor(mem: Mem) {
    this.base = regionBase(mem, REGION);
    this.nrPfns = mem.limits.nrPfns;
    this.w = mem.w;
  }

  flags(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * RMP_WORDS + R_FLAGS_ASID) & FLAG_BITS;
  }
  assigned(pfn: number): boolean {
    return (this.flags(pfn) & RMP_ASSIGNED) !== 0;
  }
  asid(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * RMP_WORDS + R_FLAGS_ASID) >>> ASID_SHIFT;
  }
  gfn(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * RMP_WORDS + R_GFN);
  }
  lookup(pfn: number): RmpEntry {
    const f = this.flags(pfn);
    return {
      assigned: (f & RMP_ASSIGNED) !== 0,
      asid: this.asid(pfn),
      gfn: this.gfn(pfn),
      validated: (f & RMP_VALIDATED) !== 0,
      immutable: (f & RMP_IMMUTABLE) !== 0,
      pageSize: 0,
    };
  }
  /**
   * The hardware check on a guest's private access: 0 if the entry is assigned to `asid` at
   * `gfn` and validated, 1 for an RMP violation (#NPF), 2 for an unvalidated page (#VC).
   */
  guestCheck(pfn: number, asid: number, gfn: number): number {
    const b = this.base + pfn * RMP_WORDS;
    const f = Atomics.load(this.w, b + R_FLAGS_ASID);
    if ((f & RMP_ASSIGNED) === 0 || f >>> ASID_SHIFT !== asid || Atomics.load(this.w, b + R_GFN) !== gfn) return 1;
    return (f & RMP_VALIDATED) === 0 ? 2 : 0;
  }
  /** Writes an entry; only firmware code calls this. */
  write(pfn: number, flags: number, asid: number, gfn: number): void {
    const b = this.base + pfn * RMP_WORDS;
    // The GPA first: a reader that sees the new owner in the flags word sees its GPA too.
    Atomics.store(this.w, b + R_GFN, gfn);
    Atomics.store(this.w, b + R_FLAGS_ASID, flags | (asid << ASID_SHIFT));
  }
  setFlags(pfn: number, flags: number): void {
    const i = this.base + pfn * RMP_WORDS + R_FLAGS_ASID;
    Atomics.store(this.w, i, (Atomics.load(this.w, i) & ~FLAG_BITS) | flags);
  }
}
