// The VMM's ops on a guest_memfd's file range: PUNCH_HOLE, fallocate, memory_failure, and a
// fallocate while the allocator is starved.

import { gmemErrorFolio } from '../../../gmem/guest_memfd.js';
import type { RunControl } from '../../../vcpu-workers/runctl.js';
import type { StressTarget } from '../layout.js';
import { punchKeepsAttributes } from './inplace.js';
import { type OpHandler, allocateFd, punchFd } from './op.js';

/** fallocate(PUNCH_HOLE): the discard a VMM makes of memory it gives back (kvm_gmem_punch_hole). */
export const punch: OpHandler = {
  range: 'file',
  run({ sb, rc, t }, { fd, index, len }) {
    // Epochs move before and after a discard, like a seqcount: a write whose epoch falls in
    // the window may be lost legitimately, and the guest will not call it data loss.
    bumpMapped(rc, t, fd, index, len);
    // 7.4 keeps attributes per index: the punch is checked to leave them alone.
    const r = sb.k.g.version.gmemAttributes ? punchKeepsAttributes(sb, fd, index, len) : punchFd(sb, fd, index, len);
    bumpMapped(rc, t, fd, index, len);
    return r;
  },
};

/** fallocate(KEEP_SIZE): allocation ahead of the faults (kvm_gmem_allocate). */
export const fallocate: OpHandler = {
  range: 'file',
  run: ({ sb }, { fd, index, len }) => allocateFd(sb, fd, index, len),
};

/** memory_failure on the page at `index` (kvm_gmem_error_folio). */
export const hwpoison: OpHandler = {
  range: 'file',
  run: ({ sb }, { fd, index }) => sb.withGmemFd(fd, (f) => (f < 0 ? f : gmemErrorFolio(sb.k.g, f, index))),
};

/** The allocator starved until this thread's next op, and a fallocate meanwhile (its ENOMEM path). */
export const oom: OpHandler = {
  range: 'file',
  run(c, { fd, index, len }) {
    // Starve, then allocate into the range as the VMM would; the vCPUs' faults meanwhile take theirs.
    c.sb.reserveHostPages(Math.max(1, c.sb.freeHostPages() - c.rng.below(3)));
    c.starved = true;
    return allocateFd(c.sb, fd, index, len);
  },
};

/** Moves the guests' epochs of every gfn that maps indices [index, index + len) of the file at `fd` (a discard). */
function bumpMapped(rc: RunControl, t: StressTarget, fd: number, index: number, len: number): void {
  for (const r of t.regions) {
    if (r.fd !== fd) continue;
    const a = Math.max(index, r.pgoff);
    const b = Math.min(index + len, r.pgoff + r.npages);
    // Linked VMs map the same indices at the same gfns; otherwise only the region's VM sees it.
    if (a < b) for (const vm of t.linked ? t.vms : [r.vm]) rc.bumpEpochs(vm, r.gfn + a - r.pgoff, r.gfn + b - r.pgoff);
  }
}
