// The modelled kernel versions: one record of behaviour switches per version, each switch naming
// the commit that changed it. Kernel code reads the switches of its sandbox's version; nothing
// else picks behaviour by version. The prepare policies of earlier releases of this tool are
// aliases for the versions they were taken from. A patch posted upstream that no modelled
// version has is a named record of switch overrides, applied on top of a version (KERNEL_PATCHES):
// a sandbox built with patches keeps their names in its shared memory ('kernel_patches'), so that
// every thread's kernel applies the same ones.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { Policy, type PolicyName } from './policy.js';

/** The modelled versions, oldest first. */
export const KERNEL_VERSIONS = ['6.10', 'b85524314a', '6.11', '6.18', '6.19', '7.0', '7.4'] as const;
export type KernelVersionName = (typeof KERNEL_VERSIONS)[number];
/**
 * `upstream` names the newest released modelled version (what mainline runs, as far as the model
 * goes); 7.4 is newer but only queued in the KVM tree.
 */
export const UPSTREAM: KernelVersionName = '7.0';
/** What --kernel, scenarios and sweeps accept: a version, or `upstream`. */
export const KERNEL_CHOICES = [...KERNEL_VERSIONS, 'upstream'] as const;
export type KernelChoice = (typeof KERNEL_CHOICES)[number];
/**
 * What `upstream` meant before 6.19 and 7.0 were modelled (saved schedules of schema version 1
 * name it): 6.18 with 9935df5333aa, which is 6.19's behaviour.
 */
export const UPSTREAM_BEFORE_7_0: KernelVersionName = '6.19';

/** The version a choice names: itself, or the newest for `upstream`. */
export function resolveKernelChoice(c: KernelChoice): KernelVersionName {
  return c === 'upstream' ? UPSTREAM : c;
}

/** The patches a version can be run with (KERNEL_PATCHES). */
export const PATCH_NAMES = ['snp-launch-state'] as const;
export type PatchName = (typeof PATCH_NAMES)[number];

export interface KernelVersion {
  readonly name: KernelVersionName;
  /** The patches applied on top of the version (none for the version itself). */
  readonly patches: readonly PatchName[];
  /** Where folios are prepared, and for which VMs (b85524314a; 6dd761d92f66 for the faulting VM only). */
  readonly prepare: Policy;
  /**
   * KVM_PRE_FAULT_MEMORY meeting a KVM_MEMSLOT_INVALID slot: false = retry while holding
   * kvm->srcu, so a memslot delete waiting in synchronize_srcu never finishes (6.11..6.17);
   * true = return -EAGAIN (3ccbf6f47098, "KVM: x86/mmu: Return -EAGAIN if userspace
   * deletes/moves memslot during prefault", 6.18).
   */
  readonly prefaultInvalidSlotEagain: boolean;
  /**
   * kvm_gmem_unbind of a slot whose file is dying (count zero, release not yet run): false =
   * return without removing the binding, so kvm_gmem_release later writes into the freed
   * memslot (since a7800aa80ea4); true = remove it anyway (ae431059e75d, 6.18).
   */
  readonly unbindDyingFile: boolean;
  /**
   * A flags-only KVM_SET_USER_MEMORY_REGION2 on a guest_memfd slot that drops
   * KVM_MEM_GUEST_MEMFD: false = accepted, the binding is left pointing at the freed old slot;
   * true = EINVAL (9935df5333aa, after 6.18).
   */
  readonly rejectGmemFlagsChange: boolean;
  /** kvm_gmem_populate refuses a folio already up to date with EEXIST (de80252414f3, after the seed). */
  readonly populateRefusesUptodate: boolean;
  /** kvm_gmem_populate refuses a gfn that is not PRIVATE with EINVAL in common code (e4ee54479273). */
  readonly populatePrivateOnly: boolean;
  /** A READONLY memslot on a VM with protected state (SNP) is EINVAL (66155de93bcf, 6.11-rc4). */
  readonly readonlyRefusedOnSnp: boolean;
  /** KVM_PRE_FAULT_MEMORY on an SNP VM before LAUNCH_FINISH is EOPNOTSUPP (5932ca411e53, just before the seed). */
  readonly prefaultNeedsLaunch: boolean;
  /**
   * vfs_fallocate's mode checks as a switch over the mode (57413d8e172c, 6.12): KEEP_SIZE with
   * COLLAPSE_RANGE or INSERT_RANGE, and two mode bits together, are EOPNOTSUPP (EINVAL before).
   */
  readonly fallocateModeSwitch: boolean;
  /**
   * Host mmap of guest_memfd (6.18: 3d3a04fad25a, d2042d8f96dd, fe2bf6234e94, 44c6cb9fe988):
   * GUEST_MEMFD_FLAG_MMAP on every VM type, GUEST_MEMFD_FLAG_INIT_SHARED on VMs without private
   * memory, KVM_CAP_GUEST_MEMFD_FLAGS, kvm_gmem_mmap and kvm_gmem_fault_user_mapping.
   */
  readonly gmemMmap: boolean;
  /**
   * KVM_MEM_GUEST_MEMFD on a VM without private memory (d1e54dd08f16, 6.18), and a binding of
   * an MMAP guest_memfd makes the slot KVM_MEMSLOT_GMEM_ONLY (576d035e2aef): its shared gfns
   * fault from the file (f029f04ddbec).
   */
  readonly gmemOnDefaultVm: boolean;
  /** SNP LAUNCH_UPDATE with len 0 is EINVAL (5b66e335ead6, 6.18); before, it did nothing and succeeded. */
  readonly launchUpdateNeedsLen: boolean;
  /**
   * kvm_gmem_populate one page at a time (6538b6221cc2, 2a62345b3052, 7.0): the source page is
   * pinned (GUP) before the invalidate lock, which is held for that page only; no EEXIST for an
   * up-to-date folio in common code (8622ef05709f).
   */
  readonly populatePerPage: boolean;
  /** SNP LAUNCH_UPDATE refuses a source address that is not page aligned (dcbcc2323c80, 7.0). */
  readonly launchUpdateAlignedSource: boolean;
  /**
   * sev_gmem_post_populate answers EEXIST for an RMP entry already assigned (de80252414f3,
   * 6.11-rc2); before it, EINVAL.
   */
  readonly snpPopulateAssignedEexist: boolean;
  /**
   * Per-inode memory attributes (1ae5be958ff7, 7.4): every index of a guest_memfd is shared or
   * private, kept under the invalidate lock; the host fault checks "shared" under it (shared)
   * instead of the INIT_SHARED flag, and kvm_gmem_get_pfn holds it (shared) for its whole run.
   */
  readonly gmemAttributes: boolean;
  /**
   * kvm.ko's module parameter gmem_in_place_conversion exists (ee1168fb7313, 537ec2b15fdd): with
   * it on, per-VM attributes are off (KVM_SET_MEMORY_ATTRIBUTES takes no PRIVATE), KVM asks
   * guest_memfd whether a gfn is private, and every guest_memfd memslot is GMEM_ONLY (2e646bcfcf90).
   */
  readonly inPlaceConversionParam: boolean;
  /**
   * KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd and KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES
   * (799c9fadc639; the refcount check dcde2f853ff4, the arch make_shared 6fa1dab756fd, the
   * early return 856852ef2108). Before it guest_memfd has no .unlocked_ioctl: ENOTTY.
   */
  readonly setMemoryAttributes2: boolean;
  /** INIT_SHARED on a VM with private memory when gmem_in_place_conversion is on (b5ed1ee2a7a0). */
  readonly initSharedOnCoco: boolean;
  /**
   * kvm_gmem_get_pfn calls the arch prepare (make_private) for private pages only (3df611b5a04e),
   * and clearing a folio that is not up to date moves into __kvm_gmem_get_pfn, which populate
   * shares (cb0544296a33).
   */
  readonly prepareOnlyPrivate: boolean;
  /** kvm_gmem_get_pfn drops its folio reference before it returns: no struct page out (89fbe3de01cc). */
  readonly getPfnDropsRef: boolean;
  /**
   * Release, PUNCH_HOLE and memory failure zap with kvm_gmem_get_all_gfns_filter: SHARED|PRIVATE
   * when gmem_in_place_conversion is on, release over [0, -1ul) (e088c7f86bef).
   */
  readonly allGfnsFilter: boolean;
  /** SNP LAUNCH_UPDATE takes a NULL source when gmem_in_place_conversion is on: populate in place (edcc3f42981e). */
  readonly launchUpdateInPlace: boolean;
  /**
   * kvm_gmem_unbind of a dying file takes the invalidate lock like any other (1f3359c873db);
   * before, ae431059e75d's path edited the bindings without it, under a concurrent walk of the
   * inode's files.
   */
  readonly unbindDyingFileLocked: boolean;
  /**
   * The bind's xa_store_range error is returned and the partial store undone (e6ecb88711d9);
   * before, it was ignored and the memslot went live without its binding.
   */
  readonly bindStoreErrorChecked: boolean;
  /**
   * Binding split into prepare and commit (3fe5d2944e5a, 83411f32b8ad, 513333a55460): the binding
   * is published once the memslot is ready; an overlapping binding is EEXIST (EINVAL at 7.0;
   * kvm-x86 5e38e1bd4e7b already answers EEXIST before the split).
   */
  readonly bindOnCommit: boolean;
  /**
   * SNP LAUNCH_START, LAUNCH_UPDATE and LAUNCH_FINISH after a successful LAUNCH_FINISH are EINVAL
   * (sev->snp_finished, the posted "Track SNP launch state" patch: no version has it). Without
   * it, KVM accepts a LAUNCH_UPDATE after LAUNCH_FINISH and only the firmware refuses it.
   */
  readonly snpLaunchStateTracked: boolean;
  /**
   * snp_launch_update_vmsa (LAUNCH_FINISH) answers EBUSY while a vCPU is being created
   * (kvm_is_vcpu_creation_in_progress, 624bf3440d72, 7.1; in 6.18.y, 6.19.y and 7.0.y, not in the
   * releases modelled here). Before, it synced the VMSAs of
   * the vCPUs online and skipped one between created_vcpus++ and online_vcpus++.
   */
  readonly launchFinishRefusesVcpuCreation: boolean;
  /**
   * snp_launch_update_vmsa holds every vCPU's mutex while it syncs their VMSAs (kvm_lock_all_vcpus,
   * cb923ee6a80f, CVE-2026-31591, 7.1; in 6.18.y, 6.19.y and 7.0.y). Before, a KVM_RUN or KVM_SET_REGS of a vCPU ran
   * while its state was copied into the save area the firmware measures.
   */
  readonly launchFinishLocksVcpus: boolean;
  /**
   * kvm_vm_ioctl_create_vcpu holds kvm->lock from created_vcpus++ to online_vcpus++ (6418b715d5a2,
   * 7.3): no LAUNCH_FINISH can see a vCPU half created. Before, kvm_arch_vcpu_create ran unlocked.
   */
  readonly createVcpuUnderKvmLock: boolean;
  /**
   * sev_es_sync_vmsa refuses a vCPU whose state is already protected (EINVAL, 9b9f7962e3e8, 7.1).
   * Before, a second LAUNCH_FINISH copied the registers into a VMSA the firmware owns: an RMP
   * fault in the host (the 2026-01 report behind the snp-launch-state patch).
   */
  readonly syncVmsaRejectsProtected: boolean;
}

/**
 * '6.10' is the state just before the seed's series, as 6.11-rc1 (a90764f0e4ed) has it: v6.10
 * itself had no arch prepare hook, no kvm_gmem_populate and no SNP, so the first kernel that
 * prepares on fallocate is the one this label models.
 */
const V610: KernelVersion = {
  name: '6.10',
  patches: [],
  prepare: Policy.ON_ALLOCATE,
  prefaultInvalidSlotEagain: false,
  unbindDyingFile: false,
  rejectGmemFlagsChange: false,
  populateRefusesUptodate: false,
  populatePrivateOnly: false,
  readonlyRefusedOnSnp: false,
  prefaultNeedsLaunch: false,
  fallocateModeSwitch: false,
  gmemMmap: false,
  gmemOnDefaultVm: false,
  launchUpdateNeedsLen: false,
  populatePerPage: false,
  launchUpdateAlignedSource: false,
  snpPopulateAssignedEexist: false,
  gmemAttributes: false,
  inPlaceConversionParam: false,
  setMemoryAttributes2: false,
  initSharedOnCoco: false,
  prepareOnlyPrivate: false,
  getPfnDropsRef: false,
  allGfnsFilter: false,
  launchUpdateInPlace: false,
  unbindDyingFileLocked: false,
  bindStoreErrorChecked: false,
  bindOnCommit: false,
  snpLaunchStateTracked: false,
  launchFinishRefusesVcpuCreation: false,
  launchFinishLocksVcpus: false,
  createVcpuUnderKvmLock: false,
  syncVmsaRejectsProtected: false,
};
const SEED: KernelVersion = { ...V610, name: 'b85524314a', prepare: Policy.ON_FAULT, prefaultNeedsLaunch: true };
const V611: KernelVersion = {
  ...SEED,
  name: '6.11',
  prepare: Policy.ON_FAULT_OWN_VM,
  populateRefusesUptodate: true,
  populatePrivateOnly: true,
  readonlyRefusedOnSnp: true,
  snpPopulateAssignedEexist: true,
};
const V618: KernelVersion = {
  ...V611,
  name: '6.18',
  prefaultInvalidSlotEagain: true,
  unbindDyingFile: true,
  fallocateModeSwitch: true,
  gmemMmap: true,
  gmemOnDefaultVm: true,
  launchUpdateNeedsLen: true,
};
/** 6.19: guest_memfd inodes on their own pseudo-fs (a13cd380ddf6, no behaviour the model shows), and 9935df5333aa. */
const V619: KernelVersion = { ...V618, name: '6.19', rejectGmemFlagsChange: true };
const V70: KernelVersion = {
  ...V619,
  name: '7.0',
  prepare: Policy.ON_EVERY_FAULT,
  populateRefusesUptodate: false,
  populatePerPage: true,
  launchUpdateAlignedSource: true,
};
/**
 * 7.4 as queued in linux-next next-20260923: guest_memfd in-place shared/private conversion
 * (v8 of Ackerley Tng's series, reworked) and the lifetime fixes of the same push. Modelled on a
 * kernel built with CONFIG_KVM_VM_MEMORY_ATTRIBUTES, so gmem_in_place_conversion is off unless
 * the sandbox turns it on.
 */
const V74: KernelVersion = {
  ...V70,
  name: '7.4',
  gmemAttributes: true,
  inPlaceConversionParam: true,
  setMemoryAttributes2: true,
  initSharedOnCoco: true,
  prepareOnlyPrivate: true,
  getPfnDropsRef: true,
  allGfnsFilter: true,
  launchUpdateInPlace: true,
  unbindDyingFileLocked: true,
  bindStoreErrorChecked: true,
  bindOnCommit: true,
  launchFinishRefusesVcpuCreation: true,
  launchFinishLocksVcpus: true,
  createVcpuUnderKvmLock: true,
  syncVmsaRejectsProtected: true,
};

export const VERSIONS: Readonly<Record<KernelVersionName, KernelVersion>> = {
  '6.10': V610,
  b85524314a: SEED,
  '6.11': V611,
  '6.18': V618,
  '6.19': V619,
  '7.0': V70,
  '7.4': V74,
};

/** The version each prepare-policy name was modelled on. */
export const POLICY_VERSION: Readonly<Record<PolicyName, KernelVersionName>> = {
  'prepare-on-allocate': '6.10',
  'prepare-on-fault': 'b85524314a',
  'prepare-on-fault-own-vm': '6.11',
  'prepare-on-every-fault': '7.0',
};

export const DEFAULT_KERNEL: KernelVersionName = '6.11';

// Where each switch was checked against the kernel source (torvalds/linux, read at the commits
// named): prepare and populate at b85524314a, 6dd761d92f66, de80252414f3, e4ee54479273 and
// a90764f0e4ed; the memslot paths at bc1a5cd00211 and 9935df5333aa; the fault path at
// 6e01b7601dfe and 3ccbf6f47098; kvm_gmem_unbind before and after ae431059e75d; READONLY at
// 66155de93bcf. Not checked line by line: the release a fix first shipped in where a stable
// backport blurs it (ae431059e75d is in 6.18 and 6.12.y; 9935df5333aa was queued for both but
// is modelled as upstream only), and the 6.11-rc1 text itself (read at a90764f0e4ed).

/** A patch posted upstream that no modelled version has: what it is, and the switches it sets. */
export interface KernelPatch {
  readonly name: PatchName;
  /** The patch's subject line. */
  readonly title: string;
  /** Who posted it, when, and its Message-ID. */
  readonly posted: string;
  /** Whether (and what of it) was merged. */
  readonly status: string;
  /** What it changes, in the model's terms. */
  readonly what: string;
  readonly overrides: Partial<Omit<KernelVersion, 'name' | 'patches'>>;
}

export const KERNEL_PATCHES: Readonly<Record<PatchName, KernelPatch>> = {
  'snp-launch-state': {
    name: 'snp-launch-state',
    title: 'KVM: SEV: Track SNP launch state and disallow invalid userspace interactions',
    posted: 'Jethro Beekman, 2026-01-19 (d98692e2-d96b-4c36-8089-4bc1e5cc3d57@fortanix.com), resent 2026-02-02',
    status: 'not merged: 9b9f7962e3e8 (7.1) took only its LAUNCH_FINISH part, by refusing to sync the VMSA of a vCPU already launched',
    what: 'sev->snp_finished, set by a successful LAUNCH_FINISH: LAUNCH_START, LAUNCH_UPDATE and LAUNCH_FINISH are then EINVAL',
    overrides: { snpLaunchStateTracked: true },
  },
};

/** Checks a list of patch names (each at most once); the names, or throws naming the first bad one. */
export function patchNames(names: readonly string[]): PatchName[] {
  for (const [i, n] of names.entries()) {
    if (!(PATCH_NAMES as readonly string[]).includes(n)) throw new Error(`patches: unknown patch '${n}'; known: ${PATCH_NAMES.join(', ')}`);
    if (names.indexOf(n) !== i) throw new Error(`patches: '${n}' given twice`);
  }
  return names as PatchName[];
}

export function kernelVersion(name: string, patches: readonly string[] = []): KernelVersion {
  if (!(KERNEL_CHOICES as readonly string[]).includes(name))
    throw new Error(`kernel: must be one of ${KERNEL_CHOICES.join(', ')}; got '${name}'`);
  const v = VERSIONS[resolveKernelChoice(name as KernelChoice)];
  const ps = patchNames(patches);
  return ps.length === 0 ? v : Object.freeze({ ...v, ...Object.assign({}, ...ps.map((p) => KERNEL_PATCHES[p].overrides)), patches: ps });
}

const PATCH_REGION = 'kernel_patches';

/** One word: the sandbox's patches as a mask over PATCH_NAMES. A reset keeps it (the sandbox's kernel does not change). */
export function declareKernelPatches(lb: LayoutBuilder): void {
  lb.add(PATCH_REGION, 1, 'gmem/version.ts', 0);
}
export function setKernelPatches(mem: Mem, names: readonly PatchName[]): void {
  Atomics.store(
    mem.w,
    regionBase(mem, PATCH_REGION),
    names.reduce((m, n) => m | (1 << PATCH_NAMES.indexOf(n)), 0),
  );
}
/** The sandbox's patches, in PATCH_NAMES order. */
export function readKernelPatches(mem: Mem): PatchName[] {
  const m = Atomics.load(mem.w, regionBase(mem, PATCH_REGION));
  return PATCH_NAMES.filter((_, i) => (m & (1 << i)) !== 0);
}
