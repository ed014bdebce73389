// The Reverse Map Table: one entry per host pfn. Owns the 'rmp' region. Written only by the
// firmware (and, for PVALIDATE, the CPU acting for the guest); read directly by everyone else.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import type { RmpEntry } from '../kvm/psp.js';

const RMP_WORDS = 4;
const R_FLAGS = 0;
const R_ASID = 1;
const R_GFN = 2;

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
    return Atomics.load(this.w, this.base + pfn * RMP_WORDS + R_FLAGS);
  }
  assigned(pfn: number): boolean {
    return (this.flags(pfn) & RMP_ASSIGNED) !== 0;
  }
  asid(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * RMP_WORDS + R_ASID);
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
    const f = Atomics.load(this.w, b + R_FLAGS);
    if ((f & RMP_ASSIGNED) === 0 || Atomics.load(this.w, b + R_ASID) !== asid || Atomics.load(this.w, b + R_GFN) !== gfn) return 1;
    return (f & RMP_VALIDATED) === 0 ? 2 : 0;
  }
  /** Writes an entry; only firmware code calls this. */
  write(pfn: number, flags: number, asid: number, gfn: number): void {
    const b = this.base + pfn * RMP_WORDS;
    Atomics.store(this.w, b + R_ASID, asid);
    Atomics.store(this.w, b + R_GFN, gfn);
    Atomics.store(this.w, b + R_FLAGS, flags);
  }
  setFlags(pfn: number, flags: number): void {
    Atomics.store(this.w, this.base + pfn * RMP_WORDS + R_FLAGS, flags);
  }
}
