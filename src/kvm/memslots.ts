// struct kvm_memory_slot per VM, plus a gfn -> memslot index for the fault path's lookup
// (the kernel's memslot tree). Owns the 'memslots' and 'gfn_to_memslot' regions.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';

export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;

const SLOT_WORDS = 8;
const S_ID = 0; // user slot id + 1; 0 = unused
const S_FLAGS = 1;
const S_BASE_GFN = 2;
const S_NPAGES = 3;
const S_USER_PAGE = 4; // userspace_addr >> PAGE_SHIFT
const S_GMEM_FILE = 5; // slot->gmem.file: file id + 1, or 0
const S_GMEM_PGOFF = 6;

const SLOTS = 'memslots';
const INDEX = 'gfn_to_memslot';

export function declareMemslots(lb: LayoutBuilder, maxVms: number, gfnsPerVm: number): void {
  lb.add(SLOTS, maxVms * LIMITS.MAX_MEMSLOTS * SLOT_WORDS, 'kvm/memslots.ts');
  lb.add(INDEX, maxVms * gfnsPerVm, 'kvm/memslots.ts');
}

export interface MemslotInfo {
  id: number;
  flags: number;
  baseGfn: number;
  npages: number;
  userPage: number;
  /** gmem file id, or -1 (none, or released) */
  gmemFile: number;
  gmemPgoff: number;
}

export class Memslots {
  readonly base: number;
  readonly indexBase: number;
  readonly gfnsPerVm: number;
  private readonly w: Int32Array;

  constructor(mem: Mem) {
    this.base = regionBase(mem, SLOTS);
    this.indexBase = regionBase(mem, INDEX);
    this.gfnsPerVm = mem.limits.gfnsPerVm;
    this.w = mem.w;
  }

  private at(vm: number, s: number): number {
    return this.base + (vm * LIMITS.MAX_MEMSLOTS + s) * SLOT_WORDS;
  }

  /** Internal index of the memslot covering gfn, or -1 (kvm_vcpu_gfn_to_memslot). */
  slotOf(vm: number, gfn: number): number {
    if (gfn < 0 || gfn >= this.gfnsPerVm) return -1;
    return Atomics.load(this.w, this.indexBase + vm * this.gfnsPerVm + gfn) - 1;
  }

  /** Internal index of user slot `id`, or -1 (id_to_memslot). */
  byId(vm: number, id: number): number {
    for (let s = 0; s < LIMITS.MAX_MEMSLOTS; s++) if (Atomics.load(this.w, this.at(vm, s) + S_ID) === id + 1) return s;
    return -1;
  }

  freeSlot(vm: number): number {
    for (let s = 0; s < LIMITS.MAX_MEMSLOTS; s++) if (Atomics.load(this.w, this.at(vm, s) + S_ID) === 0) return s;
    return -1;
  }

  info(vm: number, s: number): MemslotInfo {
    const b = this.at(vm, s);
    return {
      id: Atomics.load(this.w, b + S_ID) - 1,
      flags: Atomics.load(this.w, b + S_FLAGS),
      baseGfn: Atomics.load(this.w, b + S_BASE_GFN),
      npages: Atomics.load(this.w, b + S_NPAGES),
      userPage: Atomics.load(this.w, b + S_USER_PAGE),
      gmemFile: Atomics.load(this.w, b + S_GMEM_FILE) - 1,
      gmemPgoff: Atomics.load(this.w, b + S_GMEM_PGOFF),
    };
  }
  flags(vm: number, s: number): number {
    return Atomics.load(this.w, this.at(vm, s) + S_FLAGS);
  }
  baseGfn(vm: number, s: number): number {
    return Atomics.load(this.w, this.at(vm, s) + S_BASE_GFN);
  }
  userPage(vm: number, s: number): number {
    return Atomics.load(this.w, this.at(vm, s) + S_USER_PAGE);
  }
  gmemFile(vm: number, s: number): number {
    return Atomics.load(this.w, this.at(vm, s) + S_GMEM_FILE) - 1;
  }
  gmemPgoff(vm: number, s: number): number {
    return Atomics.load(this.w, this.at(vm, s) + S_GMEM_PGOFF);
  }

  /** True if any gfn of [start, end) belongs to a memslot other than user slot `id`. */
  overlaps(vm: number, id: number, start: number, end: number): boolean {
    for (let s = 0; s < LIMITS.MAX_MEMSLOTS; s++) {
      const i = this.info(vm, s);
      if (i.id < 0 || i.id === id) continue;
      if (i.baseGfn < end && start < i.baseGfn + i.npages) return true;
    }
    return false;
  }

  /** The parts of [start, end) that memslots map, as [start, end) pairs. */
  mappedRanges(vm: number, start: number, end: number): number[] {
    const out: number[] = [];
    for (let s = 0; s < LIMITS.MAX_MEMSLOTS; s++) {
      const i = this.info(vm, s);
      if (i.id < 0) continue;
      const lo = Math.max(start, i.baseGfn);
      const hi = Math.min(end, i.baseGfn + i.npages);
      if (lo < hi) out.push(lo, hi);
    }
    return out;
  }

  /** Writes a memslot; the gfn index is published separately by `index`. */
  write(vm: number, s: number, m: MemslotInfo): void {
    const b = this.at(vm, s);
    Atomics.store(this.w, b + S_FLAGS, m.flags);
    Atomics.store(this.w, b + S_BASE_GFN, m.baseGfn);
    Atomics.store(this.w, b + S_NPAGES, m.npages);
    Atomics.store(this.w, b + S_USER_PAGE, m.userPage);
    Atomics.store(this.w, b + S_GMEM_FILE, m.gmemFile + 1);
    Atomics.store(this.w, b + S_GMEM_PGOFF, m.gmemPgoff);
    Atomics.store(this.w, b + S_ID, m.id + 1);
  }
  setFlags(vm: number, s: number, flags: number): void {
    Atomics.store(this.w, this.at(vm, s) + S_FLAGS, flags);
  }
  /** WRITE_ONCE(slot->gmem.file, NULL) */
  detachFile(vm: number, s: number): void {
    Atomics.store(this.w, this.at(vm, s) + S_GMEM_FILE, 0);
  }
  clear(vm: number, s: number): void {
    Atomics.store(this.w, this.at(vm, s) + S_ID, 0);
  }

  /** Points gfns [start, end) at internal slot s (or at none with s = -1). */
  index(vm: number, start: number, end: number, s: number): void {
    const b = this.indexBase + vm * this.gfnsPerVm;
    for (let g = start; g < end; g++) Atomics.store(this.w, b + g, s + 1);
  }

  /** Every used internal slot of a VM. */
  used(vm: number): number[] {
    const out: number[] = [];
    for (let s = 0; s < LIMITS.MAX_MEMSLOTS; s++) if (Atomics.load(this.w, this.at(vm, s) + S_ID) !== 0) out.push(s);
    return out;
  }
}
