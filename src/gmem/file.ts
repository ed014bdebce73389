// gmem files (struct kvm_gmem and its struct file): one VM's view of an inode, a reference
// count, and the bindings (index range -> memslot). Records live in a slab: a file is LIVE while
// references remain, DYING between its last fput and kvm_gmem_release, then freed. Bindings are
// written under the invalidate lock and read locklessly by the fault path: a binding is
// published by storing its npages last. Owns the 'gmem_files' region.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';
import { NO_HANDLE, Obj, SLAB_HEADER, Slab, SlabState, handleId } from '../shm/slab.js';
import { NO_WRITE_POINTS, WHOLE_REGION, type WritePoints } from '../shm/sync/sync.js';

const FILE_WORDS = 48;
const FL_REF = SLAB_HEADER + 0; // f_count
const FL_INODE = SLAB_HEADER + 1;
const FL_VM = SLAB_HEADER + 2;
const FL_BINDINGS = 8;
const B_WORDS = 4;
const B_PGOFF = 0; // first index (slot->gmem.pgoff)
const B_NPAGES = 1; // 0 = unused
const B_SLOT = 2; // the memslot's handle (xa_store of the slot pointer)
const B_BASE_GFN = 3; // slot->base_gfn, as read through the slot pointer

const REGION = 'gmem_files';

export function declareFiles(lb: LayoutBuilder): void {
  lb.add(REGION, LIMITS.MAX_FILES * FILE_WORDS, 'gmem/file.ts');
  if (FL_BINDINGS + LIMITS.MAX_BINDINGS_PER_FILE * B_WORDS > FILE_WORDS) throw new Error('file layout overflow');
}

export interface Binding {
  pgoff: number;
  npages: number;
  /** The memslot's handle. */
  slot: number;
  baseGfn: number;
}

/**
 * File accessors take a handle; a bare record id (a handle of generation 0's id bits) reads the
 * same record, so the auditor may walk ids.
 */
export class Files {
  readonly base: number;
  readonly slab: Slab;
  private readonly w: Int32Array;

  constructor(
    mem: Mem,
    /** The point before each write (the kernel's views pass their Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
    this.slab = new Slab(this.w, this.base, LIMITS.MAX_FILES, FILE_WORDS, Obj.FILE, mem);
  }

  private at(f: number): number {
    return this.slab.at(handleId(f));
  }

  /** The scheduling point before a write to file `f`'s record (WHOLE_REGION: the slab itself). */
  private writing(f: number): void {
    this.wp.sharedWrite(this.base, f === WHOLE_REGION ? WHOLE_REGION : this.at(f));
  }

  /** A new file holding one reference (the fd's); NO_HANDLE when all MAX_FILES are in use. */
  alloc(inode: number, vm: number): number {
    this.writing(WHOLE_REGION);
    const h = this.slab.alloc();
    if (h === NO_HANDLE) return h;
    const b = this.at(h);
    Atomics.store(this.w, b + FL_INODE, inode);
    Atomics.store(this.w, b + FL_VM, vm);
    Atomics.store(this.w, b + FL_REF, 1);
    return h;
  }
  freeSlotCount(): number {
    return LIMITS.MAX_FILES - this.slab.inUse();
  }
  /** The file's memory goes back (after kvm_gmem_release). */
  free(f: number): void {
    this.writing(WHOLE_REGION);
    this.slab.free(f);
  }

  /** `f` names this life of a file whose release has not finished. */
  valid(f: number): boolean {
    return this.slab.valid(f);
  }
  /** A live file (references remain), not dying or freed. */
  isOpen(f: number): boolean {
    return this.slab.valid(f) && this.slab.state(handleId(f)) === SlabState.LIVE;
  }
  dying(f: number): boolean {
    return this.slab.valid(f) && this.slab.state(handleId(f)) === SlabState.DYING;
  }
  refcount(f: number): number {
    return Atomics.load(this.w, this.at(f) + FL_REF);
  }
  inode(f: number): number {
    return Atomics.load(this.w, this.at(f) + FL_INODE);
  }
  vm(f: number): number {
    return Atomics.load(this.w, this.at(f) + FL_VM);
  }

  /**
   * get_file_active(&slot->gmem.file): a reference on the file the word names (handle + 1), or
   * NO_HANDLE if the word is empty or the file's count already reached zero (it is dying). The
   * word is re-read after the count is taken, as the kernel does, so a file freed and reused
   * meanwhile is never returned.
   */
  getFileActive(word: number): number {
    for (;;) {
      const h = Atomics.load(this.w, word) - 1;
      if (h < 0) return NO_HANDLE;
      if (!this.tryGet(h)) {
        if (Atomics.load(this.w, word) - 1 === h) return NO_HANDLE;
        continue;
      }
      if (Atomics.load(this.w, word) - 1 === h) return h;
      this.put(h);
    }
  }
  /** get_file / file_ref_get: a reference unless the count already reached zero. */
  tryGet(f: number): boolean {
    if (!this.slab.valid(f)) return false;
    this.writing(f);
    const i = this.at(f) + FL_REF;
    for (let r = Atomics.load(this.w, i); r > 0;) {
      const prev = Atomics.compareExchange(this.w, i, r, r + 1);
      if (prev === r) {
        // Taken on a record freed and reused between the check and the CAS: give it back.
        if (this.slab.valid(f)) return true;
        Atomics.sub(this.w, i, 1);
        return false;
      }
      r = prev;
    }
    return false;
  }
  /** fput's count: true when this was the last reference (the file is now dying). */
  put(f: number): boolean {
    this.writing(f);
    const left = Atomics.sub(this.w, this.at(f) + FL_REF, 1) - 1;
    if (left < 0) throw new Error(`fput: gmem file ${handleId(f)} refcount underflow`);
    if (left > 0) return false;
    this.slab.setDying(handleId(f));
    return true;
  }

  /** Whether any file not yet freed belongs to `vm` (each pins its VM, as kvm_get_kvm does). */
  anyOfVm(vm: number): boolean {
    for (let id = 0; id < LIMITS.MAX_FILES; id++) if (this.slab.state(id) !== SlabState.FREE && this.vm(id) === vm) return true;
    return false;
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

  /** The live bindings overlapping index range [start, end), each with its gfn range [gs, ge). */
  boundOverlaps(f: number, start: number, end: number): Array<{ slot: number; gs: number; ge: number }> {
    const out: Array<{ slot: number; gs: number; ge: number }> = [];
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) {
      const bd = this.binding(f, k);
      if (bd.npages === 0) continue;
      const s = Math.max(start, bd.pgoff);
      const e = Math.min(end, bd.pgoff + bd.npages);
      if (s < e) out.push({ slot: bd.slot, gs: bd.baseGfn + s - bd.pgoff, ge: bd.baseGfn + e - bd.pgoff });
    }
    return out;
  }

  /** Adds a binding; returns false when the file already holds MAX_BINDINGS_PER_FILE. */
  addBinding(f: number, bd: Binding): boolean {
    this.writing(f);
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
  /** xa_store_range(..., NULL): removes the binding of memslot `slot`, if any. */
  removeBinding(f: number, slot: number): void {
    this.writing(f);
    const b = this.at(f) + FL_BINDINGS;
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) {
      const e = b + k * B_WORDS;
      if (Atomics.load(this.w, e + B_NPAGES) !== 0 && Atomics.load(this.w, e + B_SLOT) === slot) Atomics.store(this.w, e + B_NPAGES, 0);
    }
  }
  /** Every live binding's memslot handle. */
  boundSlots(f: number): number[] {
    const out: number[] = [];
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) {
      const bd = this.binding(f, k);
      if (bd.npages !== 0) out.push(bd.slot);
    }
    return out;
  }
}
