// The Reverse Map Table: one entry per host pfn. Owns the 'rmp' region. The entries change only
// through the instructions below (RMPUPDATE on a host thread, PVALIDATE on a vCPU thread) and the
// firmware's writes (LAUNCH_UPDATE); everyone else reads them directly, as the hardware check does.
//
// An entry is one 32-bit word, so every instruction is atomic per entry (a CAS on the word) and a
// reader sees an owner and its GPA from one load: flags in bits 0-2, the RMPUPDATE-in-progress bit
// (the entry is "in use" by an updating CPU) and its waiters bit, the ASID in bits 5-8 and the gfn
// in bits 9-30. Entries stay 16 bytes apart (the hardware's entry size), so neighbouring pfns
// handed to different vCPUs do not share one word's traffic.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';
import { P } from '../shm/points.js';
import { NO_WRITE_POINTS, type Sync, type WritePoints } from '../shm/sync/sync.js';
import { PvalidateRet, RmpupdateRet, type RmpEntry } from '../kvm/psp.js';

const RMP_WORDS = 4;
/**
 * The entry's second word: not hardware state, a note for reports of who last made the entry
 * hypervisor-owned (RECLAIMED: snp_page_reclaim, after the firmware refused a page). Any other
 * update clears it.
 */
const NOTE = 1;
export const RMP_NOTE_RECLAIMED = 1;

export const RMP_ASSIGNED = 1;
export const RMP_VALIDATED = 2;
export const RMP_IMMUTABLE = 4;
const FLAG_BITS = 7;
/** An RMPUPDATE is between its read and its write of this entry. */
const RMP_BUSY = 1 << 3;
/** Someone waits for RMP_BUSY to clear: the updater wakes them. */
const RMP_WAITERS = 1 << 4;
const ASID_SHIFT = 5;
const ASID_MASK = 0xf;
const GFN_SHIFT = 9;
const GFN_LIMIT = 1 << 22;
/** What the hardware's owner check compares: assigned, ASID and GPA. */
const OWNER_BITS = RMP_ASSIGNED | (ASID_MASK << ASID_SHIFT) | ((GFN_LIMIT - 1) << GFN_SHIFT);

/** Spins on a busy entry before sleeping: an update holds it for a few stores. */
const BUSY_SPIN = 64;

const REGION = 'rmp';

export function declareRmp(lb: LayoutBuilder, nrPfns: number): void {
  // The packed entry must hold every ASID (vm + 1) and every gfn the sandbox can have.
  if (LIMITS.MAX_VMS + 1 > ASID_MASK || LIMITS.MAX_GFNS > GFN_LIMIT) throw new Error('rmp entry layout too small for LIMITS');
  lb.add(REGION, nrPfns * RMP_WORDS, 'firmware/rmp.ts');
}

function encode(flags: number, asid: number, gfn: number): number {
  return flags | (asid << ASID_SHIFT) | (gfn << GFN_SHIFT);
}

export class Rmp {
  readonly base: number;
  readonly nrPfns: number;
  private readonly w: Int32Array;

  constructor(
    mem: Mem,
    /** The point before each write (the CPUs' and the firmware's views pass their Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.nrPfns = mem.limits.nrPfns;
    this.w = mem.w;
  }

  flags(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * RMP_WORDS) & FLAG_BITS;
  }
  assigned(pfn: number): boolean {
    return (this.flags(pfn) & RMP_ASSIGNED) !== 0;
  }
  /**
   * The first assigned pfn at or after `from` (-1: none). Plain reads: for a reader nobody
   * writes under (a quiescent point, or the token holder of a controlled run).
   */
  nextAssigned(from: number): number {
    for (let pfn = from, i = this.base + from * RMP_WORDS; pfn < this.nrPfns; pfn++, i += RMP_WORDS)
      if ((this.w[i] & RMP_ASSIGNED) !== 0) return pfn;
    return -1;
  }
  /** Whether snp_page_reclaim made the entry hypervisor-owned (and nothing updated it since). */
  reclaimed(pfn: number): boolean {
    return Atomics.load(this.w, this.base + pfn * RMP_WORDS + NOTE) === RMP_NOTE_RECLAIMED;
  }
  asid(pfn: number): number {
    return (Atomics.load(this.w, this.base + pfn * RMP_WORDS) >>> ASID_SHIFT) & ASID_MASK;
  }
  gfn(pfn: number): number {
    return Atomics.load(this.w, this.base + pfn * RMP_WORDS) >>> GFN_SHIFT;
  }
  // snp_lookup_rmpentry: one load, so owner and GPA always belong together.
  lookup(pfn: number): RmpEntry {
    const e = Atomics.load(this.w, this.base + pfn * RMP_WORDS);
    return {
      assigned: (e & RMP_ASSIGNED) !== 0,
      asid: (e >>> ASID_SHIFT) & ASID_MASK,
      gfn: e >>> GFN_SHIFT,
      validated: (e & RMP_VALIDATED) !== 0,
      immutable: (e & RMP_IMMUTABLE) !== 0,
      pageSize: 0,
    };
  }
  /**
   * The hardware check on a guest's private access: 0 if the entry is assigned to `asid` at
   * `gfn` and validated, 1 for an RMP violation (#NPF), 2 for an unvalidated page (#VC).
   */
  guestCheck(pfn: number, asid: number, gfn: number): number {
    const e = Atomics.load(this.w, this.base + pfn * RMP_WORDS);
    if ((e & OWNER_BITS) !== encode(RMP_ASSIGNED, asid, gfn)) return 1;
    return (e & RMP_VALIDATED) === 0 ? 2 : 0;
  }

  /** The shared word of an RMP entry, or -1: for reports of a wait on it. */
  pfnOfWord(i: number): number {
    const rel = i - this.base;
    if (rel < 0 || rel >= this.nrPfns * RMP_WORDS || rel % RMP_WORDS !== 0) return -1;
    return rel / RMP_WORDS;
  }

  /**
   * RMPUPDATE (APM vol. 3), one execution on the calling thread: sets the whole entry (the
   * Validated bit cleared) and returns an RmpupdateRet code. The CPU holds the entry from its
   * read to its write; another CPU's RMPUPDATE of the same entry meanwhile fails transiently
   * with FAIL_OVERLAP, the code Linux's rmpupdate() loops on. No lock shared with the firmware.
   */
  rmpupdate(pfn: number, flags: number, asid: number, gfn: number, sync: Sync, note = 0): number {
    if (!(pfn >= 0 && pfn < this.nrPfns) || !(asid >= 0 && asid <= ASID_MASK) || !(gfn >= 0 && gfn < GFN_LIMIT))
      return RmpupdateRet.FAIL_INPUT;
    if ((flags & RMP_ASSIGNED) !== 0 && asid === 0) return RmpupdateRet.FAIL_INPUT;
    const i = this.base + pfn * RMP_WORDS;
    this.wp.sharedWrite(this.base, i);
    for (let cur = Atomics.load(this.w, i); ;) {
      if ((cur & RMP_BUSY) !== 0) return RmpupdateRet.FAIL_OVERLAP;
      const seen = Atomics.compareExchange(this.w, i, cur, cur | RMP_BUSY);
      if (seen === cur) break;
      // A PVALIDATE changed the entry (it never waits): read it again.
      cur = seen;
    }
    // The instruction is executing: a point where a test or the scheduler may let another CPU in.
    sync.point(P['rmp.rmpupdate']);
    Atomics.store(this.w, i + NOTE, note);
    const prev = Atomics.exchange(this.w, i, encode(flags & (RMP_ASSIGNED | RMP_IMMUTABLE), asid, assignedGfn(flags, gfn)));
    if ((prev & RMP_WAITERS) !== 0) sync.wake(i, Infinity);
    return RmpupdateRet.SUCCESS;
  }

  /** Waits until no RMPUPDATE holds the entry: the retry of a transient failure, through Sync. */
  waitWhileUpdating(pfn: number, sync: Sync): void {
    const i = this.base + pfn * RMP_WORDS;
    for (let cur = Atomics.load(this.w, i); (cur & RMP_BUSY) !== 0; cur = Atomics.load(this.w, i)) {
      if ((cur & RMP_WAITERS) === 0) {
        if (Atomics.compareExchange(this.w, i, cur, cur | RMP_WAITERS) !== cur) continue;
        cur |= RMP_WAITERS;
      }
      sync.waitWhileEquals(i, cur, BUSY_SPIN);
    }
  }

  /**
   * PVALIDATE (APM vol. 3) by the guest of `asid` at gfn, on the vCPU's thread: a PvalidateRet
   * code, or -1 when the entry is not this guest's page at gfn (#NPF). One CAS on the entry; it
   * never waits: against an RMPUPDATE in progress it takes effect first, and the update's write
   * (which clears Validated) follows.
   */
  pvalidate(pfn: number, asid: number, gfn: number, validate: boolean): number {
    const i = this.base + pfn * RMP_WORDS;
    this.wp.sharedWrite(this.base, i);
    for (let cur = Atomics.load(this.w, i); ;) {
      if ((cur & OWNER_BITS) !== encode(RMP_ASSIGNED, asid, gfn)) return -1;
      if ((cur & RMP_IMMUTABLE) !== 0) return PvalidateRet.FAIL_INPUT;
      if (((cur & RMP_VALIDATED) !== 0) === validate) return PvalidateRet.FAIL_NOUPDATE;
      const seen = Atomics.compareExchange(this.w, i, cur, cur ^ RMP_VALIDATED);
      if (seen === cur) return PvalidateRet.SUCCESS;
      cur = seen;
    }
  }

  /**
   * The firmware's own write of an entry (LAUNCH_UPDATE leaves its page validated, guest-owned).
   * Atomic per entry; an RMPUPDATE in progress keeps its hold and its write comes after.
   */
  firmwareWrite(pfn: number, flags: number, asid: number, gfn: number): void {
    const i = this.base + pfn * RMP_WORDS;
    this.wp.sharedWrite(this.base, i);
    Atomics.store(this.w, i + NOTE, 0);
    const next = encode(flags & FLAG_BITS, asid, gfn);
    for (let cur = Atomics.load(this.w, i); ;) {
      const seen = Atomics.compareExchange(this.w, i, cur, next | (cur & (RMP_BUSY | RMP_WAITERS)));
      if (seen === cur) return;
      cur = seen;
    }
  }
}

/** A hypervisor-owned entry records no guest and no GPA. */
function assignedGfn(flags: number, gfn: number): number {
  return (flags & RMP_ASSIGNED) !== 0 ? gfn : 0;
}
