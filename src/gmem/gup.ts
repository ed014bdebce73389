// mm/gup.c as a device driver uses it on guest_memfd memory: pin_user_pages(FOLL_PIN |
// FOLL_LONGTERM | FOLL_WRITE) of one page through the VMM's mapping, as the selftests' GUP_TEST
// (PIN_LONGTERM_TEST_START) does, and unpin_user_page later. A pin is a folio reference plus
// folio->_pincount (folio_maybe_dma_pinned), which 7.4's conversion to private refuses with
// EAGAIN. The device's table of pinned pages is pin_table.ts's.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { PAGE_SIZE, SandboxLimitError } from '../shm/limits.js';
import { LockClass } from '../shm/sync/classes.js';
import type { GmemCtx } from './ctx.js';
import { folioPut } from './filemap.js';
import { hostPte } from './mmap.js';
import { MAX_PINS } from './pin_table.js';

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
