// mm/gup.c as a device driver uses it on guest_memfd memory: pin_user_pages(FOLL_PIN |
// FOLL_LONGTERM | FOLL_WRITE) of one page through the VMM's mapping, as the selftests' GUP_TEST
// (PIN_LONGTERM_TEST_START) does, and unpin_user_page later. A pin is a folio reference plus
// folio->_pincount (folio_maybe_dma_pinned), which 7.4's conversion to private refuses with
// EAGAIN. Owns the 'gup_pins' region: the device's table of pinned pages, a record each (pfn + 1,
// or 0 when free, and a generation so that a stale handle is told apart).
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { PAGE_SIZE, SandboxLimitError } from '../shm/limits.js';
import { LockClass } from '../shm/sync/classes.js';
import { NO_WRITE_POINTS, WHOLE_REGION, type WritePoints } from '../shm/sync/sync.js';
import type { GmemCtx } from './ctx.js';
import { folioPut } from './filemap.js';
import { hostPte } from './mmap.js';

/** Pages the device may hold pinned at once. */
export const MAX_PINS = 64;
const REC_WORDS = 2;
const R_PFN = 0;
const R_GEN = 1;
const ID_BITS = 8;

const REGION = 'gup_pins';

export function declareGupPins(lb: LayoutBuilder): void {
  lb.add(REGION, MAX_PINS * REC_WORDS, 'gmem/gup.ts');
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

// pin_user_pages_fast of the page at `offset` of mapping `map`: under mmap_lock (read), the
// page-table walk, faulting a missing PTE in (a fault that cannot map the page is -EFAULT, as
// vm_fault_to_errno gives for SIGBUS; VM_FAULT_OOM is -ENOMEM). Returns the pin's handle or -errno.
export function gmemPinUserPage(g: GmemCtx, map: number, offset: number): number {
  const lock = g.vmas.mmapLockWord;
  g.sync.downRead(lock, LockClass.MMAP);
  try {
    if (!g.vmas.valid(map)) return -Errno.EFAULT;
    const m = g.vmas.info(map);
    const k = Math.floor(offset / PAGE_SIZE);
    if (offset < 0 || k >= m.npages) return -Errno.EFAULT;
    const pfn = hostPte(g, map, m, k, false);
    if (pfn < 0) return pfn === -Errno.ENOMEM ? pfn : -Errno.EFAULT;
    // try_grab_folio(FOLL_PIN): the walk's reference stays as the pin's.
    g.folios.pin(pfn);
    const h = g.pins.claim(pfn);
    if (h < 0) {
      gmemUnpinPfn(g, pfn);
      throw new SandboxLimitError('gup_pin', `at most ${MAX_PINS} pages may be pinned at once`);
    }
    return h;
  } finally {
    g.sync.upRead(lock);
  }
}

// unpin_user_page: the pin and its folio reference go (the last reference frees the folio).
// -EINVAL for a handle that names no pin held now (the device's answer, not a kernel one).
export function gmemUnpinUserPage(g: GmemCtx, pin: number): number {
  const pfn = g.pins.release(pin);
  if (pfn < 0) return -Errno.EINVAL;
  gmemUnpinPfn(g, pfn);
  return 0;
}

function gmemUnpinPfn(g: GmemCtx, pfn: number): void {
  g.folios.unpin(pfn);
  folioPut(g, pfn);
}

/** The device goes away (its file is released at teardown): every page it pinned is unpinned. */
export function gmemUnpinAll(g: GmemCtx): void {
  for (const h of g.pins.live()) gmemUnpinUserPage(g, h);
}
