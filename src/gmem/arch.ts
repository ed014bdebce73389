// What guest_memfd needs from the layers above it, passed down as interfaces the way the kernel
// passes kvm_arch_gmem_prepare / kvm_arch_gmem_invalidate and calls into the MMU.

import type { Gfn, Pfn } from '../shm/frames.js';

export interface ArchGmemHooks {
  /** kvm_arch_gmem_prepare_needed: only SNP VMs register pages on prepare. */
  prepareNeeded(vm: number): boolean;
  /** kvm_arch_gmem_prepare: returns 0 or -errno. */
  prepare(vm: number, gfn: Gfn, pfn: Pfn): number;
  /** kvm_arch_gmem_invalidate: called as a folio is freed, before its pfn is reused. */
  invalidate(pfn: Pfn): void;
  /** kvm_arch_gmem_make_shared (6fa1dab756fd, 7.4): a page converted to shared goes back to the host. */
  makeShared(pfn: Pfn): void;
  /** False when a host write to `pfn` would take an RMP fault (the page belongs to a guest). */
  hostWritable(pfn: Pfn): boolean;
  /** Who owns `pfn` in the RMP (null: the hypervisor), for the report of a host write that faulted. */
  rmpOwner(pfn: Pfn): { asid: number; gfn: number; immutable: boolean } | null;
}

/** What guest_memfd calls in KVM proper: MMU notifications for the gfn ranges its bindings map, and the memslot side of a file going away. */
export interface GmemKvmOps {
  /**
   * kvm_mmu_invalidate_begin + range_add + unmap, under mmu_lock; `ranges` is [start, end)*, and
   * `filter` the kvm_gfn_range_filter of the mappings to zap.
   */
  invalidateBegin(vm: number, ranges: readonly number[], filter: number): void;
  /** kvm_mmu_invalidate_end under mmu_lock. */
  invalidateEnd(vm: number): void;
  /** WRITE_ONCE(slot->gmem.file, NULL) as a file is released or a slot unbound; a freed slot is a use after free (reported at `site`). */
  detachSlot(vm: number, slot: number, site: number): void;
  /** A read through a binding's slot pointer at `site`: false, and a KASAN report, if the slot was freed. */
  slotLive(vm: number, slot: number, site: number): boolean;
  /** The word of kvm->slots_lock, for the lockdep assertions of the paths that run under it. */
  slotsLockWord(vm: number): number;
  /** kvm_arch_supports_gmem_init_shared (44c6cb9fe988): may `vm`'s guest_memfd start shared? */
  supportsGmemInitShared(vm: number): boolean;
  /** kvm_arch_has_private_mem */
  hasPrivateMem(vm: number): boolean;
}

/** kvm_gmem_populate's post_populate callback (SNP: sev_gmem_post_populate). */
export type PostPopulate = (vm: number, gfn: Gfn, pfn: Pfn, srcIndex: number) => number;
