// Slabs for the kernel objects that are created and freed (VMs, memslots, gmem files, inodes),
// and the freed-object detector that KASAN is in the kernel. A slab is a fixed table owned by the
// object's module; every record starts with a state word and a generation word. A handle packs a
// record id with the generation it was taken at, so a handle kept past the record's free (and
// past its reuse) is told apart from a live one where it is used. Owns the 'kasan' region.

import { LayoutBuilder, type Mem, regionBase } from './layout.js';

/** Words every record starts with. */
export const SLAB_HEADER = 2;
const R_STATE = 0;
const R_GEN = 1;

export const SlabState = { FREE: 0, LIVE: 1, DYING: 2 } as const;
export type SlabState = (typeof SlabState)[keyof typeof SlabState];

/** Handles: id in the low bits, generation above. Every slab has at most 1 << HANDLE_ID_BITS records. */
export const HANDLE_ID_BITS = 8;
const ID_MASK = (1 << HANDLE_ID_BITS) - 1;
// Handles stay below 2^30, so a word can hold one plus 1 (0 = none).
const GEN_MASK = (1 << (30 - HANDLE_ID_BITS)) - 1;
export const NO_HANDLE = -1;

export function handleId(h: number): number {
  return h & ID_MASK;
}
export function handleGen(h: number): number {
  return h >>> HANDLE_ID_BITS;
}

/** Object kinds, for reports. */
export const OBJ_KINDS = ['vm', 'memslot', 'gmem file', 'inode', 'vma'] as const;
export const Obj = { VM: 0, MEMSLOT: 1, FILE: 2, INODE: 3, VMA: 4 } as const;

/**
 * Code sites that dereference a handle: the kernel function that would touch freed memory, named
 * in a report as KASAN names the faulting function.
 */
export const SITES = [
  'kvm_gmem_release: WRITE_ONCE(slot->gmem.file, NULL)',
  'kvm_gmem_invalidate_begin: slot->base_gfn',
  'kvm_gmem_prepare_folio: slot->base_gfn',
  'kvm_faultin_pfn: slot',
  'kvm_gmem_get_pfn: slot->gmem',
  'kvm_gmem_populate: slot',
  'kvm_gmem_unbind: slot',
  'fget: file',
  'kvm_gmem_get_file: file',
  'kvm_gmem_release: file',
  'kvm_vm_ioctl: kvm',
] as const;
export type SiteName = (typeof SITES)[number];
export const Site = Object.fromEntries(SITES.map((n, i) => [n, i])) as { readonly [K in SiteName]: number };

const KASAN = 'kasan';
const K_COUNT = 0;
/** Reports the auditor has already turned into violations. */
const K_TAKEN = 1;
const K_HEADER = 16;
/** Reports kept in full; more are only counted. */
export const KASAN_KEEP = 32;
const REP_WORDS = 8;
const RP_TID = 0;
const RP_KIND = 1;
const RP_ID = 2;
const RP_GEN = 3;
const RP_NOW_GEN = 4;
const RP_SITE = 5;
const RP_OWNER = 6;
const RP_STATE = 7;

export function declareKasan(lb: LayoutBuilder): void {
  lb.add(KASAN, K_HEADER + KASAN_KEEP * REP_WORDS, 'shm/slab.ts');
}

export interface KasanReport {
  tid: number;
  kind: (typeof OBJ_KINDS)[number];
  id: number;
  /** The generation the stale handle was taken at. */
  gen: number;
  /** The record's generation and state when it was touched. */
  nowGen: number;
  nowState: 'free' | 'live' | 'dying';
  site: SiteName;
  /** The VM whose table the record is in (memslots), or -1. */
  owner: number;
}

/** What a report says, one line, as a KASAN splat's first line would. */
export function describeKasan(r: KasanReport): string {
  const where = r.owner >= 0 ? ` of vm ${r.owner}` : '';
  return `KASAN: use-after-free in ${r.site}: ${r.kind} record ${r.id}${where}, handle of generation ${r.gen}, record now ${r.nowState} at generation ${r.nowGen} (thread ${r.tid})`;
}

/**
 * The reports made since the last call (each report is taken once, however often the auditor
 * runs), and how many there were in all, kept or not.
 */
export function takeKasanReports(mem: Mem): { count: number; reports: KasanReport[] } {
  const w = mem.w;
  const b = regionBase(mem, KASAN);
  const count = Atomics.load(w, b + K_COUNT);
  const from = Atomics.exchange(w, b + K_TAKEN, count);
  const reports: KasanReport[] = [];
  for (let i = from; i < Math.min(count, KASAN_KEEP); i++) {
    const r = b + K_HEADER + i * REP_WORDS;
    reports.push({
      tid: w[r + RP_TID],
      kind: OBJ_KINDS[w[r + RP_KIND]],
      id: w[r + RP_ID],
      gen: w[r + RP_GEN],
      nowGen: w[r + RP_NOW_GEN],
      nowState: (['free', 'live', 'dying'] as const)[w[r + RP_STATE]],
      site: SITES[w[r + RP_SITE]],
      owner: w[r + RP_OWNER],
    });
  }
  return { count: count - from, reports };
}

/**
 * One slab table: `count` records of `words` words from word `base`, all owned by one module
 * (which computes the base from its own region). Alloc and free run under the owner's lock.
 */
export class Slab {
  private readonly kasan: number;
  constructor(
    private readonly w: Int32Array,
    readonly base: number,
    readonly count: number,
    readonly words: number,
    private readonly kind: number,
    mem: Mem,
    /** Whose table this is (a VM id for per-VM slabs), for reports. */
    private readonly owner = -1,
  ) {
    if (count > ID_MASK + 1) throw new Error(`slab of ${OBJ_KINDS[kind]}: at most ${ID_MASK + 1} records`);
    if (words < SLAB_HEADER) throw new Error('slab record too small');
    this.kasan = regionBase(mem, KASAN);
  }

  /** First word of record `id`. */
  at(id: number): number {
    return this.base + id * this.words;
  }
  state(id: number): number {
    return Atomics.load(this.w, this.at(id) + R_STATE);
  }
  gen(id: number): number {
    return Atomics.load(this.w, this.at(id) + R_GEN);
  }
  handle(id: number): number {
    return (this.gen(id) << HANDLE_ID_BITS) | id;
  }

  /** Takes a free record (its payload zeroed, state LIVE); returns its handle, or NO_HANDLE. */
  alloc(): number {
    for (let id = 0; id < this.count; id++) {
      const b = this.at(id);
      if (Atomics.load(this.w, b + R_STATE) !== SlabState.FREE) continue;
      for (let k = SLAB_HEADER; k < this.words; k++) Atomics.store(this.w, b + k, 0);
      Atomics.store(this.w, b + R_STATE, SlabState.LIVE);
      return this.handle(id);
    }
    return NO_HANDLE;
  }
  /** Marks a live record dying (its last reference is gone; its release has not run yet). */
  setDying(id: number): void {
    Atomics.store(this.w, this.at(id) + R_STATE, SlabState.DYING);
  }
  /** kfree: the generation moves on, so every handle to this life of the record is now stale. */
  free(h: number): void {
    const id = handleId(h);
    const b = this.at(id);
    if (!this.valid(h)) throw new Error(`double free of ${OBJ_KINDS[this.kind]} record ${id}`);
    Atomics.store(this.w, b + R_GEN, (Atomics.load(this.w, b + R_GEN) + 1) & GEN_MASK);
    Atomics.store(this.w, b + R_STATE, SlabState.FREE);
  }

  /** The handle names this life of a live or dying record. */
  valid(h: number): boolean {
    if (h < 0) return false;
    const id = handleId(h);
    if (id >= this.count) return false;
    const b = this.at(id);
    return Atomics.load(this.w, b + R_GEN) === handleGen(h) && Atomics.load(this.w, b + R_STATE) !== SlabState.FREE;
  }

  /**
   * A dereference of `h` at `site` by thread `tid`: true if the record is this handle's life;
   * otherwise a use after free, reported as KASAN would, and false.
   */
  check(h: number, site: number, tid: number): boolean {
    if (this.valid(h)) return true;
    this.report(h, site, tid);
    return false;
  }

  private report(h: number, site: number, tid: number): void {
    const w = this.w;
    const n = Atomics.add(w, this.kasan + K_COUNT, 1);
    if (n >= KASAN_KEEP) return;
    const id = handleId(h);
    const r = this.kasan + K_HEADER + n * REP_WORDS;
    w[r + RP_TID] = tid;
    w[r + RP_KIND] = this.kind;
    w[r + RP_ID] = id;
    w[r + RP_GEN] = handleGen(h);
    w[r + RP_NOW_GEN] = id < this.count ? this.gen(id) : -1;
    w[r + RP_STATE] = id < this.count ? this.state(id) : 0;
    w[r + RP_SITE] = site;
    w[r + RP_OWNER] = this.owner;
  }

  /** Records not free (for the teardown audit). */
  inUse(): number {
    let n = 0;
    for (let id = 0; id < this.count; id++) if (this.state(id) !== SlabState.FREE) n++;
    return n;
  }
}
