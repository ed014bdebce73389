// A catalogue of planted bugs, compiled in and off unless a run names them: each is a mistake
// from guest_memfd's history or a plausible one, for the explorer to find. `race: false` marks
// the ones a schedule with no preemption at all already shows (a plain logic error, found by
// almost every schedule); the others need an interleaving. Owns the 'bugs'
// region (one bitmask word, read once when a thread builds its kernel context).

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import type { PointsMode } from '../shm/points.js';

export const BUGS = {
  'prepare-skips-clear': {
    bit: 1 << 0,
    race: false,
    what: 'get_pfn prepares a folio without clearing it, so the guest sees what the page held before',
  },
  'fault-skips-seq-recheck': {
    bit: 1 << 1,
    race: true,
    what: 'the fault installs its SPTE without re-checking mmu_invalidate_seq under mmu_lock',
  },
  'get-pfn-unlocked-prepare': {
    bit: 1 << 2,
    race: true,
    what: 'get_pfn drops the folio lock before preparing, so two faults can prepare one folio at once',
  },
  'punch-frees-before-zap': {
    bit: 1 << 3,
    race: false,
    what: 'PUNCH_HOLE truncates (frees) folios before it zaps the SPTEs that map them',
  },
  'invalidate-end-before-truncate': {
    bit: 1 << 5,
    race: true,
    what: 'PUNCH_HOLE ends the invalidation before truncating, so a fault can map a folio about to be freed',
  },
  'skip-arch-invalidate-on-free': {
    bit: 1 << 6,
    race: false,
    what: 'a folio leaves the page cache without the arch invalidate (its RMP entry stays guest-owned)',
  },
  'memslot-update-skips-synchronize-srcu': {
    bit: 1 << 7,
    race: true,
    what: 'kvm_set_memslot publishes memslot sets without synchronize_srcu, so a fault in flight uses a slot after it was freed',
  },
  'zap-skips-tlb-flush': {
    bit: 1 << 8,
    race: true,
    what: "an invalidation zaps SPTEs without flushing the vCPUs' TLBs, which keep the old translations",
  },
  'memslot-update-takes-kvm-lock': {
    bit: 1 << 9,
    race: false,
    what: 'KVM_SET_USER_MEMORY_REGION2 takes kvm->lock under slots_lock, the reverse of the SEV commands (kvm->lock, then slots_lock)',
  },
  'truncate-skips-host-unmap': {
    bit: 1 << 10,
    race: false,
    what: 'PUNCH_HOLE truncates folios without unmap_mapping_folio, so a host mapping keeps a page the file no longer holds',
  },
  'host-fault-skips-clear': {
    bit: 1 << 11,
    race: false,
    what: 'kvm_gmem_fault_user_mapping marks a new folio up to date without clearing it, so the host reads what the page held before',
  },
  'uptodate-after-folio-unlock': {
    bit: 1 << 12,
    race: true,
    what: 'get_pfn marks the folio up to date after folio_unlock, so a second fault takes it for a new folio and clears it again',
    // Its window (folio_unlock, then the flag's store) holds no lock operation: only a run whose
    // writes are scheduling points can stop a fault inside it.
    points: 'shared' as PointsMode,
  },
  'convert-checks-refs-before-unmap': {
    bit: 1 << 13,
    race: true,
    what: "KVM_SET_MEMORY_ATTRIBUTES2 to private counts the folios' references before unmap_mapping_pages (each host PTE's as expected), so a pin taken through a PTE in between survives the conversion",
  },
  'convert-skips-lru-drain': {
    bit: 1 << 14,
    race: false,
    what: 'kvm_gmem_has_outstanding_references answers EAGAIN without lru_add_drain_all, so a folio only the per-CPU LRU batch holds is refused',
  },
  'convert-wrong-expected-refcount': {
    bit: 1 << 15,
    race: true,
    what: "the conversion to private expects one folio reference too many (the LRU batch's, as if always there), so a host fault's reference in flight passes and the fault maps a page gone private",
  },
  'host-fault-skips-invalidate-lock': {
    bit: 1 << 16,
    race: true,
    what: "kvm_gmem_fault_user_mapping reads the index's attribute without the invalidate lock, so a conversion to private runs between its check and its mapping",
  },
} as const;
export type BugName = keyof typeof BUGS;

/** The points mode a planted bug is hunted with: 'shared' for a race whose window holds no lock operation. */
export function plantedBugPoints(bug: BugName): PointsMode {
  const b = BUGS[bug];
  return 'points' in b ? b.points : 'locks';
}
export const BUG_NAMES = Object.keys(BUGS) as BugName[];

export const Bug = Object.fromEntries(Object.entries(BUGS).map(([k, v]) => [k, v.bit])) as { readonly [K in BugName]: number };

const REGION = 'bugs';

export function declareBugs(lb: LayoutBuilder): void {
  lb.add(REGION, 1, 'gmem/bugs.ts');
}

export function bugMask(names: readonly string[]): number {
  let m = 0;
  for (const n of names) {
    if (!(n in BUGS)) throw new Error(`bug: unknown planted bug '${n}'; known: ${BUG_NAMES.join(', ')}`);
    m |= BUGS[n as BugName].bit;
  }
  return m;
}

export function setBugs(mem: Mem, mask: number): void {
  Atomics.store(mem.w, regionBase(mem, REGION), mask);
}
export function readBugs(mem: Mem): number {
  return Atomics.load(mem.w, regionBase(mem, REGION));
}
