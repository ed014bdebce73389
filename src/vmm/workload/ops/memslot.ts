// The VMM's ops on memslots and on the guest_memfd behind them: delete and recreate a slot (after
// dropping KVM_MEM_GUEST_MEMFD, as a fuzzer would), a plain slot's life, bindings the kernel must
// refuse, and close(2) of the file with a rebuild on a new one.

import { GUEST_MEMFD_FLAG_MMAP } from '../../../gmem/flags.js';
import { gmemCreate } from '../../../gmem/guest_memfd.js';
import { kvmSetMemoryRegion } from '../../../kvm/kvm_main.js';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES } from '../../../kvm/memslots.js';
import { Errno } from '../../../shm/errno.js';
import { PAGE_SIZE } from '../../../shm/limits.js';
import type { Sandbox } from '../../sandbox/sandbox.js';
import type { StressRegion, StressTarget } from '../layout.js';
import type { OpHandler } from './op.js';

/** Delete the region's slot and recreate it. */
export const memslot: OpHandler = {
  range: 'gfn',
  run: ({ sb }, { region }) => memslotOp(sb, region, 0),
};

/** Drop KVM_MEM_GUEST_MEMFD from the region's slot first (flags-only change or move), then delete and recreate. */
export const memflags: OpHandler = {
  range: 'gfn',
  run({ sb, rc, t, rng }, { region }) {
    // A GMEM_ONLY slot's shared gfns come from the file: dropping the flag moves them to the
    // VMM's memory and back, a discard as the guests see it.
    const moves = (t.gmemFlags & GUEST_MEMFD_FLAG_MMAP) !== 0;
    if (moves) rc.bumpEpochs(region.vm, region.gfn, region.gfn + region.npages);
    const r = memslotOp(sb, region, 1 + rng.below(2));
    if (moves) rc.bumpEpochs(region.vm, region.gfn, region.gfn + region.npages);
    return r;
  },
};

/** A memslot without guest_memfd: created, given dirty logging, moved and deleted. */
export const plainslot: OpHandler = {
  range: 'gfn',
  run: ({ sb, t, rng }) => plainSlotOp(sb, t.vms[0], rng.below(2)),
};

/** A memslot the kernel must refuse, left in place if accepted. */
export const badbind: OpHandler = {
  range: 'gfn',
  run: ({ sb, rng }, { region }) => badBindOp(sb, region.vm, region, rng.below(3)),
};

/** close(2) of the region's guest_memfd, then slot 0 rebuilt on a new one. */
export const close: OpHandler = {
  range: 'gfn',
  run({ sb, rc, t }, { fd }) {
    // Only a VM's own file: a linked inode outlives it, and its other VMs keep their slots.
    if (t.linked) return null;
    const first = t.regions[0].gfn;
    for (const vm of t.vms) rc.bumpEpochs(vm, first, first + t.pages);
    const r = closeAndRebuild(sb, t, fd);
    for (const vm of t.vms) rc.bumpEpochs(vm, first, first + t.pages);
    return r;
  },
};

/** The memslot id 'plainslot' uses: above the layouts' (0 and 1). */
const PLAIN_SLOT = 8;
const PLAIN_PAGES = 2;

/** The gfns 'plainslot' creates and moves its slot over, in a VM of `gfnsPerVm` frames: what guests probe. */
export function plainSlotGfns(gfnsPerVm: number): { gfn: number; count: number } {
  return { gfn: gfnsPerVm - 4 * PLAIN_PAGES, count: 2 * PLAIN_PAGES };
}

/**
 * A memslot of VMM memory only, at the top of the guest physical space: created, given dirty
 * logging by a flags-only change, moved up (variant 1 moves first), then deleted. The guests
 * of an explore schedule probe its gfns (WorkloadConfig.probe). Returns the first error, or 0.
 */
function plainSlotOp(sb: Sandbox, vm: number, variant: number): number {
  const { gfn } = plainSlotGfns(sb.k.memslots.gfnsPerVm);
  const user = sb.mem.limits.userPages - PLAIN_PAGES;
  const set = (flags: number, at: number, npages: number): number =>
    kvmSetMemoryRegion(sb.k, vm, {
      slot: PLAIN_SLOT,
      flags,
      guestPhysAddr: at * PAGE_SIZE,
      memorySize: npages * PAGE_SIZE,
      userspaceAddr: user * PAGE_SIZE,
      gmemFile: -1,
      guestMemfdOffset: 0,
    });
  if (gfn < 0 || user < 0) return 0;
  const steps =
    variant === 0
      ? [
          () => set(0, gfn, PLAIN_PAGES),
          () => set(KVM_MEM_LOG_DIRTY_PAGES, gfn, PLAIN_PAGES),
          () => set(KVM_MEM_LOG_DIRTY_PAGES, gfn + PLAIN_PAGES, PLAIN_PAGES),
        ]
      : [
          () => set(0, gfn, PLAIN_PAGES),
          () => set(0, gfn + PLAIN_PAGES, PLAIN_PAGES),
          () => set(KVM_MEM_LOG_DIRTY_PAGES, gfn + PLAIN_PAGES, PLAIN_PAGES),
        ];
  let e = 0;
  for (const step of steps) e ||= step();
  // Delete whatever is there (another VMM thread may have made or moved it).
  const del = set(0, gfn, 0);
  return e || (del === -Errno.EINVAL ? 0 : del);
}

/** The memslot id 'badbind' tries: above the others. */
const BAD_SLOT = 9;

/**
 * A KVM_SET_USER_MEMORY_REGION2 the kernel must refuse (kvm_gmem_bind, kvm_set_memory_region):
 * variant 0 binds an index of `r`'s file that `r` already binds, 1 binds past the file's end, 2
 * places a plain slot over `r`'s first gfn. Returns its errno: 0 means it was accepted, and the
 * slot stays for the auditor (bindings and memslots must stay disjoint, inside the file).
 */
function badBindOp(sb: Sandbox, vm: number, r: StressRegion, variant: number): number {
  const gfn = variant === 2 ? r.gfn : sb.k.memslots.gfnsPerVm - 6 * PLAIN_PAGES;
  const pgoff = variant === 0 ? r.pgoff : r.filePages - 1;
  const npages = variant === 1 ? 2 : 1;
  if (gfn < 0 || pgoff < 0) return 0;
  return sb.withGmemFd(r.fd, (gmemFile) =>
    kvmSetMemoryRegion(sb.k, vm, {
      slot: BAD_SLOT,
      flags: variant === 2 ? 0 : KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: gfn * PAGE_SIZE,
      memorySize: npages * PAGE_SIZE,
      userspaceAddr: (sb.mem.limits.userPages - PLAIN_PAGES) * PAGE_SIZE,
      gmemFile,
      guestMemfdOffset: pgoff * PAGE_SIZE,
    }),
  );
}

/** KVM_SET_USER_MEMORY_REGION2 for a region's slot on VM `vm`: its range, or a delete (npages 0), or another change. */
function setSlot(sb: Sandbox, r: StressRegion, vm: number, m: { flags: number; gfn: number; npages: number }): number {
  return sb.withGmemFd(r.fd, (gmemFile) =>
    kvmSetMemoryRegion(sb.k, vm, {
      slot: r.slot,
      flags: m.flags,
      guestPhysAddr: m.gfn * PAGE_SIZE,
      memorySize: m.npages * PAGE_SIZE,
      userspaceAddr: r.userPage * PAGE_SIZE,
      gmemFile,
      guestMemfdOffset: r.pgoff * PAGE_SIZE,
    }),
  );
}

/**
 * Variant 0 deletes the region's slot on VM 0 and recreates it; 1 and 2 first drop
 * KVM_MEM_GUEST_MEMFD by a flags-only change or a move to the top of the guest physical space
 * (accepted before 9935df5333aa, which leaves the file's binding on the freed slot), then
 * delete and recreate. Returns the first error, or 0.
 */
function memslotOp(sb: Sandbox, r: StressRegion, variant: number): number {
  const vm = r.vm;
  let e = 0;
  if (variant > 0) e = setSlot(sb, r, vm, { flags: 0, gfn: variant === 2 ? sb.k.memslots.gfnsPerVm - r.npages : r.gfn, npages: r.npages });
  const del = setSlot(sb, r, vm, { flags: KVM_MEM_GUEST_MEMFD, gfn: r.gfn, npages: 0 });
  const add = setSlot(sb, r, vm, { flags: KVM_MEM_GUEST_MEMFD, gfn: r.gfn, npages: r.npages });
  return e || del || add;
}

/**
 * close(2) of a guest_memfd while vCPUs may be faulting through it (their references keep it
 * until they let go); the VMM then deletes the slots it backed and binds a new guest_memfd of
 * the same size there.
 */
function closeAndRebuild(sb: Sandbox, t: StressTarget, fd: number): number {
  const backed = t.regions.filter((r) => r.fd === fd);
  const vm = backed[0].vm;
  const size = sb.withGmemFd(fd, (f) => (f < 0 ? f : sb.k.g.inodes.sizePages(sb.k.g.files.inode(f))));
  if (size < 0) return size;
  // Another VMM thread may have closed it first: that close's EBADF is this one's answer.
  const closed = sb.closeFdRaw(fd);
  if (closed < 0) return closed;
  let e = 0;
  for (const r of backed) e ||= setSlot(sb, r, vm, { flags: KVM_MEM_GUEST_MEMFD, gfn: r.gfn, npages: 0 });
  const next = gmemCreate(sb.k.g, vm, size * PAGE_SIZE, t.gmemFlags);
  if (next < 0) return next;
  const nfd = sb.allocFd({ kind: 'gmem', file: next });
  for (const r of backed) {
    r.file = next;
    r.fd = nfd;
    e ||= setSlot(sb, r, vm, { flags: KVM_MEM_GUEST_MEMFD, gfn: r.gfn, npages: r.npages });
  }
  return e;
}
