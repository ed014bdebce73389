// gmem files: one VM's view of an inode, with its bindings (index range -> memslot).
// Owns the 'gmem_files' region. Bindings are fixed slots written under the invalidate lock and
// read locklessly by the fault path: a binding is published by storing its npages last.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';

const FILE_WORDS = 48;
const FL_STATE = 0; // FILE_FREE / FILE_OPEN / FILE_RELEASED
const FL_INODE = 1;
const FL_VM = 2;
const FL_BINDINGS = 8;
const B_WORDS = 4;
const B_PGOFF = 0; // first index (slot->gmem.pgoff)
const B_NPAGES = 1; // 0 = unused
const B_SLOT = 2; // memslot (VM-internal index)
const B_BASE_GFN = 3;

export const FILE_FREE = 0;
export const FILE_OPEN = 1;

const REGION = 'gmem_files';

export function declareFiles(lb: LayoutBuilder): void {
  lb.add(REGION, LIMITS.MAX_FILES * FILE_WORDS, 'gmem/file.ts');
  if (FL_BINDINGS + LIMITS.MAX_BINDINGS_PER_FILE * B_WORDS > FILE_WORDS) throw new Error('file layout overflow');
}

export interface Binding {
  pgoff: number;
  npages: number;
  slot: number;
  baseGfn: number;
}

export class Files {
  readonly base: number;
  private readonly w: Int32Array;

  constructor(mem: Mem) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
  }

  private at(f: number): number {
    return this.base + f * FILE_WORDS;
  }

  /** Takes a free file slot; -1 when all MAX_FILES are in use. Caller holds the inode table lock. */
  alloc(inode: number, vm: number): number {
    for (let f = 0; f < LIMITS.MAX_FILES; f++) {
      const b = this.at(f);
      if (Atomics.load(this.w, b + FL_STATE) !== FILE_FREE) continue;
      Atomics.store(this.w, b + FL_INODE, inode);
      Atomics.store(this.w, b + FL_VM, vm);
      for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) Atomics.store(this.w, b + FL_BINDINGS + k * B_WORDS + B_NPAGES, 0);
      Atomics.store(this.w, b + FL_STATE, FILE_OPEN);
      return f;
    }
    return -1;
  }
  freeSlotCount(): number {
    let n = 0;
    for (let f = 0; f < LIMITS.MAX_FILES; f++) if (Atomics.load(this.w, this.at(f) + FL_STATE) === FILE_FREE) n++;
    return n;
  }
  free(f: number): void {
    Atomics.store(this.w, this.at(f) + FL_STATE, FILE_FREE);
  }

  isOpen(f: number): boolean {
    return f >= 0 && f < LIMITS.MAX_FILES && Atomics.load(this.w, this.at(f) + FL_STATE) === FILE_OPEN;
  }
  inode(f: number): number {
    return Atomics.load(this.w, this.at(f) + FL_INODE);
  }
  vm(f: number): number {
    return Atomics.load(this.w, this.at(f) + FL_VM);
  }

  /** xa_load(&gmem->bindings, index): binding slot k holding `index`, or -1. */
  bindingAt(f: number, index: number): number {
    const b = this.at(f) + FL_BINDINGS;
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) {
      const e = b + k * B_WORDS;
      const n = Atomics.load(this.w, e + B_NPAGES);
      if (n === 0) continue;
      const off = Atomics.load(this.w, e + B_PGOFF);
      if (index >= off && index < off + n) return k;
    }
    return -1;
  }
  binding(f: number, k: number): Binding {
    const e = this.at(f) + FL_BINDINGS + k * B_WORDS;
    return {
      pgoff: Atomics.load(this.w, e + B_PGOFF),
      npages: Atomics.load(this.w, e + B_NPAGES),
      slot: Atomics.load(this.w, e + B_SLOT),
      baseGfn: Atomics.load(this.w, e + B_BASE_GFN),
    };
  }
  bindingSlot(f: number, k: number): number {
    return Atomics.load(this.w, this.at(f) + FL_BINDINGS + k * B_WORDS + B_SLOT);
  }
  /** gfn = slot->base_gfn + index - slot->gmem.pgoff */
  bindingGfn(f: number, k: number, index: number): number {
    const e = this.at(f) + FL_BINDINGS + k * B_WORDS;
    return Atomics.load(this.w, e + B_BASE_GFN) + index - Atomics.load(this.w, e + B_PGOFF);
  }

  /** True if any index of [start, end) is bound. */
  anyBound(f: number, start: number, end: number): boolean {
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) {
      const bd = this.binding(f, k);
      if (bd.npages !== 0 && bd.pgoff < end && start < bd.pgoff + bd.npages) return true;
    }
    return false;
  }

  /** The gfn ranges [start, end) of the bindings overlapping index range [start, end). */
  boundGfnRanges(f: number, start: number, end: number): number[] {
    const out: number[] = [];
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) {
      const bd = this.binding(f, k);
      if (bd.npages === 0) continue;
      const s = Math.max(start, bd.pgoff);
      const e = Math.min(end, bd.pgoff + bd.npages);
      if (s < e) out.push(bd.baseGfn + s - bd.pgoff, bd.baseGfn + e - bd.pgoff);
    }
    return out;
  }

  /** Adds a binding; returns false when the file already holds MAX_BINDINGS_PER_FILE. */
  addBinding(f: number, bd: Binding): boolean {
    const b = this.at(f) + FL_BINDINGS;
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) {
      const e = b + k * B_WORDS;
      if (Atomics.load(this.w, e + B_NPAGES) !== 0) continue;
      Atomics.store(this.w, e + B_PGOFF, bd.pgoff);
      Atomics.store(this.w, e + B_SLOT, bd.slot);
      Atomics.store(this.w, e + B_BASE_GFN, bd.baseGfn);
      Atomics.store(this.w, e + B_NPAGES, bd.npages);
      return true;
    }
    return false;
  }
  freeBindingSlots(f: number): number {
    let n = 0;
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) if (this.binding(f, k).npages === 0) n++;
    return n;
  }
  /** Removes the binding of memslot `slot`, if any. */
  removeBinding(f: number, slot: number): void {
    const b = this.at(f) + FL_BINDINGS;
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) {
      const e = b + k * B_WORDS;
      if (Atomics.load(this.w, e + B_NPAGES) !== 0 && Atomics.load(this.w, e + B_SLOT) === slot) Atomics.store(this.w, e + B_NPAGES, 0);
    }
  }
  /** Every live binding's memslot. */
  boundSlots(f: number): number[] {
    const out: number[] = [];
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) {
      const bd = this.binding(f, k);
      if (bd.npages !== 0) out.push(bd.slot);
    }
    return out;
  }
}
