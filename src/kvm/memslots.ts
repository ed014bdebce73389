// struct kvm_memslots and struct kvm_memory_slot, as include/linux/kvm_host.h and kvm_main.c keep
// them: two memslot sets per VM, one active (what readers under kvm->srcu see) and one inactive
// (what an update edits), each with its own gfn index; an update edits the inactive set and
// publishes it by swapping, so a reader always sees one consistent set. Slot records live in a
// per-VM slab and are never rewritten while published: a change installs a new record. Handles
// carry the record's generation, so a slot used after kvm_free_memslot is reported.
// Owns the 'memslots' and 'gfn_to_memslot' regions.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';
import { NO_HANDLE, Obj, SLAB_HEADER, Slab, handleId } from '../shm/slab.js';
import { NO_WRITE_POINTS, type WritePoints } from '../shm/sync/sync.js';

export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;
/** KVM_MEMSLOT_INVALID: the slot is being deleted or moved; a fault that meets it retries. */
export const KVM_MEMSLOT_INVALID = 1 << 16;
/**
 * KVM_MEMSLOT_GMEM_ONLY (576d035e2aef, 6.18): bound to a guest_memfd that supports mmap, so every
 * fault, shared or private, takes its page from the file (kvm_memslot_is_gmem_only).
 */
export const KVM_MEMSLOT_GMEM_ONLY = 1 << 17;

// Per VM: a header, the two sets' slot lists, then the slot records.
const H_ACTIVE = 0;
/** kvm_memslots.generation: bumped at every publish; a fault that retried waits for it to move. */
const H_GENERATION = 1;
const HEADER = 16;
/** Records: every slot of both sets, the INVALID copy of a slot being deleted, and its successor. */
const NREC = 2 * LIMITS.MAX_MEMSLOTS + 2;
const REC_WORDS = 16;
const S_ID = SLAB_HEADER + 0;
const S_FLAGS = SLAB_HEADER + 1;
const S_BASE_GFN = SLAB_HEADER + 2;
const S_NPAGES = SLAB_HEADER + 3;
const S_USER_PAGE = SLAB_HEADER + 4;
/** slot->gmem.file: the file's handle + 1, or 0. */
const S_GMEM_FILE = SLAB_HEADER + 5;
const S_GMEM_PGOFF = SLAB_HEADER + 6;
const SETS = HEADER;
const RECS = SETS + 2 * LIMITS.MAX_MEMSLOTS;
const VM_WORDS = RECS + NREC * REC_WORDS;

const SLOTS = 'memslots';
const INDEX = 'gfn_to_memslot';

export function declareMemslots(lb: LayoutBuilder, maxVms: number, gfnsPerVm: number): void {
  lb.add(SLOTS, maxVms * VM_WORDS, 'kvm/memslots.ts');
  lb.add(INDEX, maxVms * 2 * gfnsPerVm, 'kvm/memslots.ts');
}

export interface MemslotInfo {
  id: number;
  flags: number;
  baseGfn: number;
  npages: number;
  userPage: number;
  /** slot->gmem.file: the gmem file's handle, or -1 (none, or released) */
  gmemFile: number;
  gmemPgoff: number;
}

export class Memslots {
  readonly base: number;
  readonly indexBase: number;
  readonly gfnsPerVm: number;
  private readonly w: Int32Array;
  private readonly slabs: Slab[];

  constructor(
    mem: Mem,
    /** The point before each write (the kernel's views pass their Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, SLOTS);
    this.indexBase = regionBase(mem, INDEX);
    this.gfnsPerVm = mem.limits.gfnsPerVm;
    this.w = mem.w;
    this.slabs = Array.from(
      { length: mem.limits.maxVms },
      (_, vm) => new Slab(this.w, this.vmBase(vm) + RECS, NREC, REC_WORDS, Obj.MEMSLOT, mem, vm),
    );
  }

  private vmBase(vm: number): number {
    return this.base + vm * VM_WORDS;
  }
  /** The scheduling point before a write to `vm`'s memslots: its sets, index and slot records are one object. */
  private writing(vm: number): void {
    this.wp.sharedWrite(this.base, this.vmBase(vm));
  }
  private rec(vm: number, h: number): number {
    return this.slabs[vm].at(handleId(h));
  }
  private setList(vm: number, set: number): number {
    return this.vmBase(vm) + SETS + set * LIMITS.MAX_MEMSLOTS;
  }
  private gfnIndex(vm: number, set: number): number {
    return this.indexBase + (vm * 2 + set) * this.gfnsPerVm;
  }
  private active(vm: number): number {
    return Atomics.load(this.w, this.vmBase(vm) + H_ACTIVE);
  }

  // ---- readers: under kvm->srcu (or slots_lock) ----

  /** The word a fault that retried on an INVALID slot waits on. */
  generationWord(vm: number): number {
    return this.vmBase(vm) + H_GENERATION;
  }
  generation(vm: number): number {
    return Atomics.load(this.w, this.generationWord(vm));
  }

  /** kvm_vcpu_gfn_to_memslot in the active set: the slot's handle, or NO_HANDLE. One load each. */
  lookup(vm: number, gfn: number): number {
    if (gfn < 0 || gfn >= this.gfnsPerVm) return NO_HANDLE;
    return Atomics.load(this.w, this.gfnIndex(vm, this.active(vm)) + gfn) - 1;
  }

  /** A use of slot `h` at `site`: false (and a KASAN report) if the slot was freed. */
  check(vm: number, h: number, site: number, tid: number): boolean {
    return this.slabs[vm].check(h, site, tid);
  }
  /** True while `h` names a slot that is not freed (for the auditor and assertions). */
  valid(vm: number, h: number): boolean {
    return this.slabs[vm].valid(h);
  }

  id(vm: number, h: number): number {
    return Atomics.load(this.w, this.rec(vm, h) + S_ID);
  }
  flags(vm: number, h: number): number {
    return Atomics.load(this.w, this.rec(vm, h) + S_FLAGS);
  }
  baseGfn(vm: number, h: number): number {
    return Atomics.load(this.w, this.rec(vm, h) + S_BASE_GFN);
  }
  npages(vm: number, h: number): number {
    return Atomics.load(this.w, this.rec(vm, h) + S_NPAGES);
  }
  userPage(vm: number, h: number): number {
    return Atomics.load(this.w, this.rec(vm, h) + S_USER_PAGE);
  }
  /** The word holding slot->gmem.file (file handle + 1), for get_file_active. */
  gmemFileWord(vm: number, h: number): number {
    return this.rec(vm, h) + S_GMEM_FILE;
  }
  gmemFile(vm: number, h: number): number {
    return Atomics.load(this.w, this.rec(vm, h) + S_GMEM_FILE) - 1;
  }
  gmemPgoff(vm: number, h: number): number {
    return Atomics.load(this.w, this.rec(vm, h) + S_GMEM_PGOFF);
  }
  info(vm: number, h: number): MemslotInfo {
    const b = this.rec(vm, h);
    return {
      id: Atomics.load(this.w, b + S_ID),
      flags: Atomics.load(this.w, b + S_FLAGS),
      baseGfn: Atomics.load(this.w, b + S_BASE_GFN),
      npages: Atomics.load(this.w, b + S_NPAGES),
      userPage: Atomics.load(this.w, b + S_USER_PAGE),
      gmemFile: Atomics.load(this.w, b + S_GMEM_FILE) - 1,
      gmemPgoff: Atomics.load(this.w, b + S_GMEM_PGOFF),
    };
  }

  /** Every slot of the active set (id_to_memslot's universe). */
  used(vm: number): number[] {
    const out: number[] = [];
    const l = this.setList(vm, this.active(vm));
    for (let k = 0; k < LIMITS.MAX_MEMSLOTS; k++) {
      const h = Atomics.load(this.w, l + k) - 1;
      if (h >= 0) out.push(h);
    }
    return out;
  }
  /** id_to_memslot: the active slot with user id `id`, or NO_HANDLE. */
  byId(vm: number, id: number): number {
    for (const h of this.used(vm)) if (this.id(vm, h) === id) return h;
    return NO_HANDLE;
  }
  /** True if any gfn of [start, end) belongs to an active memslot other than user slot `id`. */
  overlaps(vm: number, id: number, start: number, end: number): boolean {
    for (const h of this.used(vm)) {
      if (this.id(vm, h) === id) continue;
      const b = this.baseGfn(vm, h);
      if (b < end && start < b + this.npages(vm, h)) return true;
    }
    return false;
  }
  /** The parts of [start, end) that active memslots map, as [start, end) pairs. */
  mappedRanges(vm: number, start: number, end: number): number[] {
    const out: number[] = [];
    for (const h of this.used(vm)) {
      const b = this.baseGfn(vm, h);
      const lo = Math.max(start, b);
      const hi = Math.min(end, b + this.npages(vm, h));
      if (lo < hi) out.push(lo, hi);
    }
    return out;
  }
  /** Slot records not freed (the teardown audit). */
  recordsInUse(vm: number): number {
    return this.slabs[vm].inUse();
  }

  // ---- writers: under slots_lock ----

  /** kzalloc of a struct kvm_memory_slot, filled in; NO_HANDLE when the slab is full. */
  alloc(vm: number, m: MemslotInfo): number {
    this.writing(vm);
    const h = this.slabs[vm].alloc();
    if (h === NO_HANDLE) return h;
    const b = this.rec(vm, h);
    Atomics.store(this.w, b + S_ID, m.id);
    Atomics.store(this.w, b + S_FLAGS, m.flags);
    Atomics.store(this.w, b + S_BASE_GFN, m.baseGfn);
    Atomics.store(this.w, b + S_NPAGES, m.npages);
    Atomics.store(this.w, b + S_USER_PAGE, m.userPage);
    Atomics.store(this.w, b + S_GMEM_FILE, m.gmemFile + 1);
    Atomics.store(this.w, b + S_GMEM_PGOFF, m.gmemPgoff);
    return h;
  }
  /** kfree of a slot record: every handle to it is stale from now on. */
  free(vm: number, h: number): void {
    this.writing(vm);
    this.slabs[vm].free(h);
  }
  /** slot->gmem.file = file (kvm_gmem_bind, on a slot not yet published). */
  setGmemFile(vm: number, h: number, file: number): void {
    this.writing(vm);
    Atomics.store(this.w, this.rec(vm, h) + S_GMEM_FILE, file + 1);
  }
  /** WRITE_ONCE(slot->gmem.file, NULL) */
  detachFile(vm: number, h: number): void {
    this.writing(vm);
    Atomics.store(this.w, this.rec(vm, h) + S_GMEM_FILE, 0);
  }

  /** kvm_replace_memslot on the inactive set: `old` out (or NO_HANDLE), `next` in (or NO_HANDLE). */
  replace(vm: number, old: number, next: number): void {
    this.writing(vm);
    const set = 1 - this.active(vm);
    const l = this.setList(vm, set);
    const idx = this.gfnIndex(vm, set);
    if (old !== NO_HANDLE) {
      let k = 0;
      while (k < LIMITS.MAX_MEMSLOTS && Atomics.load(this.w, l + k) !== old + 1) k++;
      if (k === LIMITS.MAX_MEMSLOTS)
        throw new Error(`kvm_replace_memslot: vm ${vm} slot record ${handleId(old)} is not in the inactive set`);
      Atomics.store(this.w, l + k, 0);
      const b = this.baseGfn(vm, old);
      const e = b + this.npages(vm, old);
      for (let g = b; g < e; g++) if (Atomics.load(this.w, idx + g) === old + 1) Atomics.store(this.w, idx + g, 0);
    }
    if (next !== NO_HANDLE) {
      let k = 0;
      while (k < LIMITS.MAX_MEMSLOTS && Atomics.load(this.w, l + k) !== 0) k++;
      if (k === LIMITS.MAX_MEMSLOTS) throw new Error(`kvm_replace_memslot: vm ${vm} has no room for another slot`);
      Atomics.store(this.w, l + k, next + 1);
      const b = this.baseGfn(vm, next);
      const e = b + this.npages(vm, next);
      for (let g = b; g < e; g++) Atomics.store(this.w, idx + g, next + 1);
    }
  }

  /**
   * The publish half of kvm_swap_active_memslots: the inactive set becomes the one readers see
   * and the generation moves. The caller then waits in synchronize_srcu for older readers.
   */
  swap(vm: number): void {
    this.writing(vm);
    const b = this.vmBase(vm);
    Atomics.store(this.w, b + H_ACTIVE, 1 - Atomics.load(this.w, b + H_ACTIVE));
    Atomics.add(this.w, b + H_GENERATION, 1);
  }
}
