// The catalogue of historical guest_memfd and KVM memslot bugs the sandbox reproduces by running
// the kernel version that had them: no switch plants them; the version's own behaviour (see
// gmem/version.ts) is the bug, and the version with the fix runs the same workload clean. The
// accepted races of b85524314a are listed too, as findings: no version fixes them.

import type { KernelVersionName, PatchName } from '../../gmem/version.js';
import type { Invariant, Violation } from '../../checker/violations.js';
import type { ExploreWorkload } from './explorer.js';

export interface HistoricalBug {
  readonly id: string;
  /** Always true here: an entry the model cannot show is an InexpressibleBug. */
  readonly expressible?: true;
  readonly title: string;
  /** The commit that brought it in, and the one that fixed it (null: accepted, a finding). */
  readonly introducedBy: string;
  readonly fixedBy: string | null;
  /** Modelled versions that have it, and versions that have the fix. */
  readonly buggy: readonly KernelVersionName[];
  readonly fixed: readonly KernelVersionName[];
  /** A posted patch (gmem/version.ts KERNEL_PATCHES) that, applied on a buggy version, fixes it. */
  readonly fixedByPatch?: PatchName;
  /** What the explorer reports (a finding is counted, not a broken invariant). */
  readonly invariant: Invariant | 'finding';
  /** The code site or object a report names, as a pattern over the violation's detail. */
  readonly detail: RegExp;
  /** Other reports the same bug makes in some interleavings (each an invariant and a detail pattern). */
  readonly alsoReports?: ReadonlyArray<{ readonly invariant: Invariant; readonly detail: RegExp }>;
  /** The interleaving, in a sentence. */
  readonly how: string;
  /** The explorer workload that reaches it (over the default); findings name a scenario instead. */
  readonly workload?: Partial<ExploreWorkload>;
  readonly scenario?: string;
}

/**
 * A real bug the model cannot show, listed so that nobody goes looking for it: `why` names what
 * the model lacks. Nothing searches for one (no workload, no scenario, never a known bug).
 */
export interface InexpressibleBug {
  readonly id: string;
  readonly title: string;
  readonly introducedBy: string;
  readonly fixedBy: string;
  /** Kernels that had it, modelled or not, and the modelled versions with the fix. */
  readonly buggyIn: string;
  readonly fixed: readonly KernelVersionName[];
  readonly expressible: false;
  readonly why: string;
}

export type CatalogueEntry = HistoricalBug | InexpressibleBug;

export const CATALOGUE: readonly HistoricalBug[] = [
  {
    id: 'prefault-memslot-deadlock',
    title: 'KVM_PRE_FAULT_MEMORY retries on an INVALID memslot while holding kvm->srcu; the memslot update waits for it forever',
    introducedBy: '6e01b7601dfe (KVM_PRE_FAULT_MEMORY, 6.11-rc1)',
    fixedBy: '3ccbf6f47098 (6.18: pre-fault returns EAGAIN)',
    buggy: ['6.10', 'b85524314a', '6.11'],
    fixed: ['6.18', '6.19', '7.0', '7.4'],
    invariant: 'liveness',
    detail: /waits on synchronize_srcu\(kvm->srcu of vm \d+\)/,
    how: 'a vCPU thread pre-faults a page of a memslot the VMM deletes: the fault meets the INVALID copy and retries inside its read section, while the delete waits in synchronize_srcu for that section to end',
    workload: { vmType: 'sw-protected', ops: 'memslot=1', vmmOps: 2, prefaultRatio: 0.3 },
  },
  {
    id: 'gmem-unbind-dying-file',
    title: 'a memslot deleted while its guest_memfd is dying keeps its binding; kvm_gmem_release then writes into the freed memslot',
    introducedBy: 'a7800aa80ea4 (KVM: Add KVM_CREATE_GUEST_MEMFD ioctl, 6.8)',
    fixedBy: 'ae431059e75d (6.18)',
    buggy: ['6.10', 'b85524314a', '6.11'],
    fixed: ['6.18', '6.19', '7.0', '7.4'],
    invariant: 'useAfterFree',
    detail: /KASAN: use-after-free in kvm_gmem_release: WRITE_ONCE\(slot->gmem\.file, NULL\)/,
    how: 'the VMM closes the guest_memfd while a fault holds a reference; the fault drops the last one (the file is dying, its release pending as task work), the VMM deletes the memslot, and kvm_gmem_unbind returns early because get_file_active fails',
    workload: { vmType: 'sw-protected', ops: 'close=1,memslot=1,punch=1', vmmOps: 4, prefaultRatio: 0 },
  },
  {
    id: 'gmem-flags-toggle',
    title: 'a memslot update that drops KVM_MEM_GUEST_MEMFD is accepted; the old slot is freed with the binding still pointing at it',
    introducedBy: 'a7800aa80ea4 (6.8)',
    fixedBy: '9935df5333aa (6.19-rc1)',
    buggy: ['6.10', 'b85524314a', '6.11', '6.18'],
    fixed: ['6.19', '7.0', '7.4'],
    invariant: 'useAfterFree',
    // 6.10 and b85524314a also walk the dangling binding when they prepare (kvm_gmem_prepare_folio).
    detail: /which was freed \(a dangling pointer\)|KASAN: use-after-free in kvm_gmem_(release|invalidate_begin|prepare_folio)/,
    how: 'a flags-only change (or a move) without KVM_MEM_GUEST_MEMFD replaces the slot; MOVE and FLAGS_ONLY free the old slot without kvm_gmem_unbind, so the next PUNCH_HOLE, the release or (before 6.11) a prepare walks a freed slot',
    workload: { vmType: 'sw-protected', ops: 'memflags=1,punch=1', vmmOps: 3, prefaultRatio: 0 },
  },
  {
    id: 'memory-failure-punch-hole-deadlock',
    title:
      'memory failure takes the invalidate lock under the folio lock, PUNCH_HOLE locks folios under the invalidate lock: the two can deadlock',
    introducedBy: 'a7800aa80ea4 (kvm_gmem_error_folio, 6.8)',
    fixedBy: null,
    buggy: ['6.10', 'b85524314a', '6.11', '6.18', '6.19', '7.0', '7.4'],
    fixed: [],
    invariant: 'liveness',
    // Whoever waits for the invalidate lock holds the folio lock another actor waits for, in
    // either order in the report (no lookahead: JS does not backtrack into one, so it would
    // try only the last invalidate_lock waiter).
    detail:
      /(?:: |; )([^;:]+?) waits on invalidate_lock \(rwsem\) of guest_memfd inode.*waits on folio lock of pfn \d+ \(held by \1\)|waits on folio lock of pfn \d+ \(held by ([^;]+?)\)(?:;.*)?; \2 waits on invalidate_lock \(rwsem\) of guest_memfd inode/,
    how: "memory_failure locks the folio and calls kvm_gmem_error_folio, which waits for filemap_invalidate_lock_shared; a PUNCH_HOLE holds the invalidate lock and waits in truncate_inode_pages_range's folio_lock for that folio. Lockdep cannot see it (PG_locked has no lockdep map); no report or fix was found upstream",
    workload: { vmType: 'sw-protected', ops: 'fallocate=1,hwpoison=2,punch=2', vmmOps: 6, vmmThreads: 2, multiVmShare: 0, pages: 2 },
  },
  {
    id: 'late-launch-update-prefault',
    title:
      'a LAUNCH_UPDATE after LAUNCH_FINISH is accepted; a KVM_PRE_FAULT_MEMORY of the same never-faulted gfn clears, or maps, the page the populate is making private',
    introducedBy: 'dee5a47cc7a4 (KVM_SEV_SNP_LAUNCH_UPDATE, 6.11), with pre-fault allowed after LAUNCH_FINISH',
    fixedBy: null,
    buggy: ['6.10', 'b85524314a', '6.11', '6.18', '6.19', '7.0'],
    fixed: [],
    fixedByPatch: 'snp-launch-state',
    invariant: 'hostIsolation',
    detail:
      /RMP faults\); the first: (?:clear_highpage in kvm_gmem_get_(?:pfn|folio) on pfn \d+ \(thread \d+\), assigned to ASID \d+ at gfn \d+, immutable|memcpy in sev_gmem_post_populate)/,
    alsoReports: [{ invariant: 'rmpAgreement', detail: /snp_page_reclaim made it shared after the firmware refused its LAUNCH_UPDATE/ }],
    how: "snp_launch_update checks only that the launch started, so a LAUNCH_UPDATE after LAUNCH_FINISH (pre_fault_allowed set) runs; kvm_gmem_populate unlocks the folio before sev_gmem_post_populate makes it private, and a pre-fault of the same gfn (kvm_gmem_get_pfn takes no invalidate lock) finds it not up to date: it clears the page the populate made guest-owned (an RMP #PF), or it maps it private, and when the firmware refuses the late LAUNCH_UPDATE, snp_page_reclaim makes it shared under the new SPTE. No merged fix; Jethro Beekman's posted patch refuses the LAUNCH_UPDATE (--patch snp-launch-state)",
    workload: { multiVmShare: 1 },
  },
  {
    id: 'snp-launch-finish-unlocked-vcpus',
    title: "LAUNCH_FINISH syncs each vCPU's VMSA without holding its vcpu->mutex: a KVM_RUN changes the vCPU while its state is copied",
    introducedBy: 'ad27ce155566 (KVM_SEV_SNP_LAUNCH_FINISH, 6.11)',
    fixedBy: 'cb923ee6a80f (7.1, CVE-2026-31591: kvm_lock_all_vcpus around the sync)',
    buggy: ['6.10', 'b85524314a', '6.11', '6.18', '6.19', '7.0'],
    fixed: ['7.4'],
    invariant: 'launchState',
    detail: /changed a vCPU while LAUNCH_FINISH synced its VMSA/,
    how: "snp_launch_update_vmsa walks the online vCPUs and runs sev_es_sync_vmsa on each under kvm->lock only; a vCPU thread's KVM_RUN holds just vcpu->mutex, so it changes the vCPU's state between the copy into the VMSA and guest_state_protected: the measured save area is not the vCPU's state, and the vCPU runs while its VMSA changes hands",
    workload: { multiVmShare: 1, ops: 'populate=1,vcpu=8', vmmOps: 9, vmmThreads: 3, pages: 2 },
  },
  {
    id: 'snp-launch-finish-twice',
    title: 'a second LAUNCH_FINISH syncs the VMSAs again, writing pages the firmware already owns',
    introducedBy: 'ad27ce155566 (KVM_SEV_SNP_LAUNCH_FINISH, 6.11)',
    fixedBy: '9b9f7962e3e8 (7.1: sev_es_sync_vmsa refuses a vCPU already launched)',
    buggy: ['6.10', 'b85524314a', '6.11', '6.18', '6.19', '7.0'],
    fixed: ['7.4'],
    fixedByPatch: 'snp-launch-state',
    invariant: 'hostIsolation',
    detail: /VMSA\(s\) synced again after the firmware took them/,
    how: "snp_launch_finish keeps no launch state: a second LAUNCH_FINISH runs snp_launch_update_vmsa again, and sev_es_sync_vmsa copies the registers into each VMSA, a page LAUNCH_UPDATE made the guest's (an RMP #PF in the host; Jethro Beekman's January 2026 report). The firmware refuses the LAUNCH_FINISH only after",
    workload: { multiVmShare: 1, ops: 'populate=2,punch=1', vmmOps: 6 },
  },
  {
    id: 'punch-hole-leftover',
    title: 'a fault racing PUNCH_HOLE leaves a prepared folio in the file (accepted by b85524314a)',
    introducedBy: 'b85524314a',
    // Not a fix of it, but it can no longer happen: the fault runs kvm_gmem_get_pfn under the
    // invalidate lock, which PUNCH_HOLE holds from before the truncation to after invalidate_end.
    fixedBy: '1ae5be958ff7 (queued for 7.4: kvm_gmem_get_pfn holds the invalidate lock, shared)',
    buggy: ['b85524314a', '6.11', '6.18', '6.19', '7.0'],
    fixed: ['7.4'],
    invariant: 'finding',
    detail: /punch-hole leftover/,
    how: 'the fault grabs and prepares a new folio between the truncation and invalidate_end; it then retries, but the folio stays in the filemap',
    scenario: 'examples/punch-hole-leftover.json',
  },
  {
    id: 'cross-vm-prepare',
    title:
      'preparing a page for one VM calls the arch prepare hook for every VM bound to the inode, in list order (accepted by b85524314a)',
    introducedBy: 'the first kvm_arch_gmem_prepare (6.11-rc1)',
    fixedBy: '6dd761d92f66 (6.11: the faulting VM only)',
    buggy: ['6.10', 'b85524314a'],
    fixed: ['6.11', '6.18', '6.19', '7.0', '7.4'],
    invariant: 'finding',
    detail: /cross-VM prepare/,
    how: 'with two SNP VMs bound to one inode (link), the newest file is first in the list: its VM gets the RMP entry, and the faulting VM finds its page assigned to another ASID',
    scenario: 'examples/two-vms-one-inode.json',
  },
];

/** Whether a kernel version, with these patches, has a catalogued bug. */
export function hasBug(b: HistoricalBug, kernel: KernelVersionName, patches: readonly PatchName[] = []): boolean {
  return b.buggy.includes(kernel) && (b.fixedByPatch === undefined || !patches.includes(b.fixedByPatch));
}

/** Bugs of the host mmap era (6.18 on) that the model cannot show; `gmem-sandbox catalogue` lists them with why. */
export const INEXPRESSIBLE: readonly InexpressibleBug[] = [
  {
    id: 'gmem-shared-invalidation',
    title:
      'guest_memfd invalidations (PUNCH_HOLE, memory failure, release) name only PRIVATE gfns, though an INIT_SHARED file backs SHARED ones',
    introducedBy: '3d3a04fad25a (host mmap, 6.18-rc1)',
    fixedBy: '5d3341d684be (6.18-rc2: kvm_gmem_get_invalidate_filter, SHARED for an INIT_SHARED file)',
    buggyIn: '6.18-rc1 only; no release had it',
    fixed: ['6.18', '6.19', '7.0', '7.4'],
    expressible: false,
    why:
      'no modelled version has it (6.18-rc1 is not modelled), and on x86 it changes nothing anyway: only TDX consumes the filter ' +
      '(the commit says so); kvm_gfn_range_filter_to_root_types returns KVM_DIRECT_ROOTS for every VM without mirrored TDP, and the ' +
      'rmap zap ignores it, so the unmap zaps shared and private SPTEs alike; the model zaps every SPTE in the range the same way, ' +
      'and has neither TDX nor ARM',
  },
  {
    id: 'gmem-thp-collapse',
    title: 'khugepaged or MADV_COLLAPSE makes large folios of a host-mapped guest_memfd; the next host fault WARNs and is SIGBUS',
    introducedBy: '7fbb5e188248 (THP without VM_EXEC), reachable once guest_memfd could be mapped (3d3a04fad25a, 6.18)',
    fixedBy: 'dd085fe9a8eb (7.0-rc: no THP for files on anonymous inodes; MADV_COLLAPSE is EINVAL)',
    buggyIn: '6.18 and 6.19 built with CONFIG_READ_ONLY_THP_FOR_FS',
    fixed: ['7.0', '7.4'],
    expressible: false,
    why:
      'the model has order-0 folios only, and no khugepaged or madvise: nothing can collapse pages into a large folio, so ' +
      "kvm_gmem_fault_user_mapping's WARN_ON_ONCE(folio_test_large(folio)) cannot be reached",
  },
];

/** Why a schedule failed, as the catalogue names it: a known bug of the kernel run (every violation known), or nothing known. */
export function knownBug(
  kernel: KernelVersionName,
  violations: readonly Violation[],
  patches: readonly PatchName[] = [],
): HistoricalBug | null {
  const signs = (b: HistoricalBug, v: Violation): boolean =>
    (b.invariant === v.invariant && b.detail.test(v.detail)) ||
    (b.alsoReports ?? []).some((a) => a.invariant === v.invariant && a.detail.test(v.detail));
  const match = (v: Violation) => CATALOGUE.find((b) => hasBug(b, kernel, patches) && signs(b, v));
  const first = violations.length > 0 ? match(violations[0]) : undefined;
  // A schedule that broke something else as well is not set aside.
  return first !== undefined && violations.every((v) => match(v) !== undefined) ? first : null;
}

/** The catalogue's findings a schedule's audit counted (accepted races: a counter each, not a violation). */
export function knownFindings(
  kernel: KernelVersionName,
  f: { punchHoleLeftovers: number; crossVmPrepare: number },
  patches: readonly PatchName[] = [],
): HistoricalBug[] {
  const seen: HistoricalBug[] = [];
  for (const b of CATALOGUE) {
    if (b.invariant !== 'finding' || !hasBug(b, kernel, patches)) continue;
    if ((b.id === 'punch-hole-leftover' && f.punchHoleLeftovers > 0) || (b.id === 'cross-vm-prepare' && f.crossVmPrepare > 0)) seen.push(b);
  }
  return seen;
}

export function historicalBug(id: string): HistoricalBug {
  const b = CATALOGUE.find((x) => x.id === id);
  const inexpressible = INEXPRESSIBLE.find((x) => x.id === id);
  if (inexpressible !== undefined) throw new Error(`catalogue: '${id}' cannot be expressed in this model: ${inexpressible.why}`);
  if (b === undefined) throw new Error(`catalogue: no bug '${id}'; known: ${CATALOGUE.map((x) => x.id).join(', ')}`);
  return b;
}
