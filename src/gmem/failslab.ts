// Fault injection for guest_memfd's small allocations (the kernel's failslab): the next N
// GFP_KERNEL allocations of maple tree nodes (memory attributes, 7.4) and xarray nodes (memslot
// bindings) fail with -ENOMEM. Owns the 'failslab' region.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';

const REGION = 'failslab';

export function declareFailslab(lb: LayoutBuilder): void {
  lb.add(REGION, 1, 'gmem/failslab.ts');
}

/** The next `n` allocations fail (0 ends it). */
export function injectSlabFailures(mem: Mem, n: number): void {
  Atomics.store(mem.w, regionBase(mem, REGION), n);
}

/** should_failslab: consumes one injected failure, if any is left. */
export function shouldFailSlab(mem: Mem): boolean {
  const i = regionBase(mem, REGION);
  for (let n = Atomics.load(mem.w, i); n > 0; n = Atomics.load(mem.w, i)) {
    if (Atomics.compareExchange(mem.w, i, n, n - 1) === n) return true;
  }
  return false;
}
