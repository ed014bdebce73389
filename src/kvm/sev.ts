// arch/x86/kvm/svm/sev.c: the guest_memfd arch hooks for SNP and the SNP launch ioctls.

import type { ArchGmemHooks, PostPopulate } from '../gmem/arch.js';
import { hostCopy } from '../gmem/filemap.js';
import { gmemPopulate } from '../gmem/populate.js';
import { Errno } from '../shm/errno.js';
import { PAGE_SIZE, isPageAligned } from '../shm/limits.js';
import { P } from '../shm/points.js';
import { C } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import type { KvmCtx } from './ctx.js';
import { withMutex } from './locking.js';
import { KVM_MEM_GUEST_MEMFD } from './memslots.js';
import { kvmMemIsPrivate } from './private_mem.js';
import { kvmIsVcpuCreationInProgress } from './kvm_vcpu_ioctl.js';
import { LaunchReport } from './vcpu_state.js';
import { kvmTaskWork } from './task_work.js';
import { NO_HANDLE, Site } from '../shm/slab.js';
import { SevRet, SnpPageType, type SnpPlatform } from './psp.js';
import { SnpPhase } from './vm.js';
import type { Gfn, Pfn } from '../shm/frames.js';

export class SevArch implements ArchGmemHooks {
  constructor(
    private readonly k: KvmCtx,
    private readonly psp: SnpPlatform,
  ) {}

  // kvm_arch_gmem_prepare_needed
  prepareNeeded(vm: number): boolean {
    return this.k.vms.isSnp(vm);
  }

  // sev_gmem_prepare
  prepare(vm: number, gfn: Gfn, pfn: Pfn): number {
    if (!this.k.vms.isSnp(vm)) return 0;
    if (this.psp.rmpAssigned(pfn)) return 0;
    this.k.stats[C.rmpUpdates]++;
    return this.psp.rmpMakePrivate(pfn, gfn, this.k.vms.asid(vm), false) < 0 ? -Errno.EINVAL : 0;
  }

  // sev_gmem_invalidate
  invalidate(pfn: Pfn): void {
    this.k.stats[C.archInvalidateCalls]++;
    if (!this.psp.rmpAssigned(pfn)) return;
    this.k.stats[C.rmpUpdates]++;
    this.psp.rmpMakeShared(pfn);
  }

  // sev_gmem_make_shared (6fa1dab756fd, 7.4): a page converted to shared goes back to the
  // hypervisor, as sev_gmem_invalidate does for one leaving the page cache.
  makeShared(pfn: Pfn): void {
    if (!this.psp.rmpAssigned(pfn)) return;
    this.k.stats[C.rmpUpdates]++;
    this.psp.rmpMakeShared(pfn);
  }

  hostWritable(pfn: Pfn): boolean {
    return !this.psp.rmpAssigned(pfn);
  }

  rmpOwner(pfn: Pfn): { asid: number; gfn: number; immutable: boolean } | null {
    const e = this.psp.rmpLookup(pfn);
    return e.assigned ? { asid: e.asid, gfn: e.gfn, immutable: e.immutable } : null;
  }
}

/** Why the last LAUNCH_UPDATE failed: the populate errno behind the ioctl's EIO, and fw_error. */
export interface LaunchUpdateResult {
  /** 0 or -errno as the ioctl returns it. */
  ret: number;
  pagesDone: number;
  /** kvm_gmem_populate's own error when it failed (the ioctl reports EIO for all of them). */
  populateErr: number;
  fwError: number;
}

// sev_mem_enc_ioctl: every SEV command runs under kvm->lock, which is taken outside slots_lock.
function withKvmLock<T>(k: KvmCtx, vm: number, fn: () => T): T {
  return withMutex(k, k.vms.kvmLockWord(vm), LockClass.KVM_LOCK, fn);
}

// sev_mem_enc_ioctl(KVM_SEV_SNP_LAUNCH_START)
export function snpLaunchStart(k: KvmCtx, psp: SnpPlatform, vm: number): number {
  return withKvmLock(k, vm, () => snpLaunchStartLocked(k, psp, vm));
}

// snp_launch_start. KVM checks no RMP entry here; the ASID comes with KVM_SEV_INIT2.
function snpLaunchStartLocked(k: KvmCtx, psp: SnpPlatform, vm: number): number {
  // sev_mem_enc_ioctl: mutex_lock(&kvm->lock) around every command.
  k.sync.assertHeld(k.vms.kvmLockWord(vm));
  if (!k.vms.isSnp(vm)) return -Errno.ENOTTY;
  if (k.vms.snpPhase(vm) !== SnpPhase.NONE) return -Errno.EINVAL;
  const fw = psp.launchStart(k.vms.asid(vm));
  if (fw !== SevRet.SUCCESS) return -Errno.EIO;
  k.vms.setSnpPhase(vm, SnpPhase.LAUNCHING);
  return 0;
}

const VALID_PAGE_TYPES: ReadonlySet<number> = new Set(Object.values(SnpPageType));

/**
 * A LAUNCH_UPDATE's userspace source: the bytes from uaddr on (as many as are mapped: a page of
 * the range past them faults), and uaddr's offset within its page.
 */
export interface LaunchSource {
  data: Uint8Array;
  pageOffset: number;
}

// sev_mem_enc_ioctl(KVM_SEV_SNP_LAUNCH_UPDATE). `src` null is uaddr 0.
export function snpLaunchUpdate(
  k: KvmCtx,
  psp: SnpPlatform,
  vm: number,
  gfnStart: number,
  len: number,
  type: number,
  src: LaunchSource | null,
): LaunchUpdateResult {
  return withKvmLock(k, vm, () => snpLaunchUpdateLocked(k, psp, vm, gfnStart, len, type, type === SnpPageType.ZERO ? null : src));
}

// snp_launch_update: the checks before slots_lock, in the kernel's order.
function launchUpdateInvalid(k: KvmCtx, vm: number, len: number, type: number, src: LaunchSource | null): boolean {
  const v = k.g.version;
  // `if (!sev_snp_guest(kvm) || !sev->snp_context) return -EINVAL;` (START and FINISH answer
  // -ENOTTY for a VM that is not SNP); the posted launch-state patch adds `|| sev->snp_finished`.
  if (!k.vms.isSnp(vm) || k.vms.snpPhase(vm) === SnpPhase.NONE || launchFinished(k, vm)) return true;
  // 5b66e335ead6 (6.18) refuses len 0; before, zero pages were populated and the ioctl succeeded.
  if ((len === 0 && v.launchUpdateNeedsLen) || len < 0 || !isPageAligned(len) || !VALID_PAGE_TYPES.has(type)) return true;
  // dcbcc2323c80 (7.0): `if (!PAGE_ALIGNED(src)) return -EINVAL;`
  return v.launchUpdateAlignedSource && src !== null && src.pageOffset % PAGE_SIZE !== 0;
}

// snp_launch_update -> kvm_gmem_populate -> sev_gmem_post_populate. No kvm->srcu section:
// slots_lock keeps the memslots still.
function snpLaunchUpdateLocked(
  k: KvmCtx,
  psp: SnpPlatform,
  vm: number,
  gfnStart: number,
  len: number,
  type: number,
  src: LaunchSource | null,
): LaunchUpdateResult {
  const fail = (ret: number): LaunchUpdateResult => ({ ret, pagesDone: 0, populateErr: 0, fwError: 0 });
  // sev_mem_enc_ioctl: mutex_lock(&kvm->lock) around every command.
  k.sync.assertHeld(k.vms.kvmLockWord(vm));
  if (launchUpdateInvalid(k, vm, len, type, src)) return fail(-Errno.EINVAL);
  const fw = { error: 0 };
  const post = sevGmemPostPopulate(k, psp, vm, type, src, fw);
  // 2a62345b3052 (7.0): get_user_pages_fast of each source page, before the invalidate lock.
  const pinSource = src === null ? null : (i: number) => (sourceMapped(src, i) ? 0 : -Errno.EFAULT);
  const slotsLock = k.vms.slotsLockWord(vm);
  k.sync.mutexLock(slotsLock, LockClass.SLOTS);
  try {
    const s = k.memslots.lookup(vm, gfnStart);
    // kvm_slot_can_be_private (kvm_slot_has_gmem)
    if (s === NO_HANDLE || (k.memslots.flags(vm, s) & KVM_MEM_GUEST_MEMFD) === 0) return fail(-Errno.EINVAL);
    k.memslots.check(vm, s, Site['kvm_gmem_populate: slot'], k.sync.tid);
    const m = k.memslots.info(vm, s);
    const slot = { fileWord: k.memslots.gmemFileWord(vm, s), slot: s, baseGfn: m.baseGfn, npages: m.npages, pgoff: m.gmemPgoff };
    // fa7b8b1bb5d0: kvm_mem_is_private, guest_memfd's answer with gmem_in_place_conversion on.
    const isPrivate = (gfn: number) => kvmMemIsPrivate(k, vm, gfn);
    const count = gmemPopulate(k.g, vm, slot, gfnStart, len / PAGE_SIZE, { isPrivate, post, pinSource });
    // Any failure of the first page is EIO; a later one is partial progress and success.
    if (count < 0) return { ret: -Errno.EIO, pagesDone: 0, populateErr: count, fwError: fw.error };
    return { ret: 0, pagesDone: count, populateErr: 0, fwError: fw.error };
  } finally {
    k.sync.mutexUnlock(slotsLock);
    kvmTaskWork(k);
  }
}

/** Whether page `i` of the source is mapped (its copy or its pin would not fault). */
function sourceMapped(src: LaunchSource, i: number): boolean {
  return (i + 1) * PAGE_SIZE <= src.data.length;
}

// sev_gmem_post_populate, one page.
function sevGmemPostPopulate(
  k: KvmCtx,
  psp: SnpPlatform,
  vm: number,
  type: number,
  src: LaunchSource | null,
  fw: { error: number },
): PostPopulate {
  const v = k.g.version;
  const asid = k.vms.asid(vm);
  return (_vm, gfn, pfn, i) => {
    // Before e4ee54479273 the callback checked kvm_mem_is_private itself.
    if (!v.populatePrivateOnly && !k.attrs.isPrivate(vm, gfn)) return -Errno.EINVAL;
    // An RMP entry not in its initial hypervisor-owned state: EEXIST since de80252414f3.
    if (psp.rmpAssigned(pfn)) return v.snpPopulateAssignedEexist ? -Errno.EEXIST : -Errno.EINVAL;
    if (type !== SnpPageType.ZERO && src === null) {
      // edcc3f42981e (7.4): no source with gmem_in_place_conversion on measures the page's own
      // contents in place. Otherwise 7.0's WARN_ON_ONCE(type != ZERO && !src_page) (7.4:
      // !gmem_in_place_conversion && ...) is EINVAL; before 7.0, copy_from_user(NULL) faulted.
      if (!(v.launchUpdateInPlace && k.g.inPlace)) return v.populatePerPage ? -Errno.EINVAL : -Errno.EFAULT;
    } else if (type !== SnpPageType.ZERO && src !== null) {
      // Before 7.0, copy_from_user of page i; from 7.0 the page was pinned, and memcpy cannot fail.
      if (!sourceMapped(src, i)) return -Errno.EFAULT;
      if (!hostCopy(k.g, pfn, src.data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), 'memcpy in sev_gmem_post_populate'))
        return -Errno.EFAULT;
    }
    k.stats[C.rmpUpdates]++;
    // rmp_make_private's error (-EFAULT from rmpupdate) is returned as is.
    const rr = psp.rmpMakePrivate(pfn, gfn, asid, true);
    if (rr < 0) return rr;
    const ret = psp.launchUpdate(asid, pfn, gfn, type);
    if (ret !== SevRet.SUCCESS) {
      // snp_page_reclaim: PAGE_RECLAIM, then the page back to shared.
      fw.error = ret;
      psp.rmpMakeShared(pfn, true);
      return -Errno.EIO;
    }
    return 0;
  };
}

/**
 * sev->snp_finished, with the posted "Track SNP launch state" patch (snpLaunchStateTracked): the
 * launch ended, so LAUNCH_UPDATE and LAUNCH_FINISH are refused. Without it KVM keeps no such
 * state: it accepts them, and only the firmware refuses.
 */
function launchFinished(k: KvmCtx, vm: number): boolean {
  return k.g.version.snpLaunchStateTracked && k.vms.snpPhase(vm) === SnpPhase.FINISHED;
}

// sev_mem_enc_ioctl(KVM_SEV_SNP_LAUNCH_FINISH)
export function snpLaunchFinish(k: KvmCtx, psp: SnpPlatform, vm: number): number {
  return withKvmLock(k, vm, () => snpLaunchFinishLocked(k, psp, vm));
}

// snp_launch_finish
function snpLaunchFinishLocked(k: KvmCtx, psp: SnpPlatform, vm: number): number {
  // sev_mem_enc_ioctl: mutex_lock(&kvm->lock) around every command.
  k.sync.assertHeld(k.vms.kvmLockWord(vm));
  if (!k.vms.isSnp(vm)) return -Errno.ENOTTY;
  if (k.vms.snpPhase(vm) === SnpPhase.NONE || launchFinished(k, vm)) return -Errno.EINVAL;
  const r = snpLaunchUpdateVmsa(k, vm);
  if (r < 0) return r;
  const fw = psp.launchFinish(k.vms.asid(vm));
  if (fw !== SevRet.SUCCESS) return -Errno.EIO;
  k.vms.setSnpPhase(vm, SnpPhase.FINISHED);
  k.vms.setPreFaultAllowed(vm);
  return 0;
}

// snp_launch_update_vmsa: every vCPU online gets its registers synced into its VMSA, which the
// firmware then takes (rmp_make_private and SNP_LAUNCH_UPDATE of type VMSA: not modelled, no pfn
// backs a VMSA here) and guest_state_protected is set.
function snpLaunchUpdateVmsa(k: KvmCtx, vm: number): number {
  const v = k.version;
  if (v.launchFinishRefusesVcpuCreation && kvmIsVcpuCreationInProgress(k, vm)) return -Errno.EBUSY;
  const ids: number[] = [];
  for (let id = 0; id < k.vms.createdVcpus(vm); id++) if (k.vcpuStates.online(vm, id)) ids.push(id);
  if (!v.launchFinishLocksVcpus) return syncVmsas(k, vm, ids);
  // kvm_lock_all_vcpus (cb923ee6a80f): no vCPU ioctl runs while its state is synced.
  for (const id of ids) k.sync.mutexLock(k.vcpuStates.mutexWord(vm, id), LockClass.VCPU_MUTEX);
  try {
    return syncVmsas(k, vm, ids);
  } finally {
    for (const id of ids.reverse()) k.sync.mutexUnlock(k.vcpuStates.mutexWord(vm, id));
  }
}

function syncVmsas(k: KvmCtx, vm: number, ids: readonly number[]): number {
  const s = k.vcpuStates;
  for (const id of ids) {
    const r = sevEsSyncVmsa(k, vm, id);
    if (r < 0) return r;
    s.setProtected(vm, id);
    s.setSyncing(vm, id, false);
  }
  // kvm_for_each_vcpu walks vcpu_array: a vCPU between created_vcpus++ and online_vcpus++ is
  // not there and stays unmeasured, as one created after LAUNCH_FINISH would: harmless, so only
  // counted (624bf3440d72 refuses the LAUNCH_FINISH, as hardening).
  for (let id = 0; id < k.vms.createdVcpus(vm); id++) {
    if (s.online(vm, id)) continue;
    k.stats[C.vcpusSkippedByLaunchFinish]++;
  }
  return 0;
}

// sev_es_sync_vmsa: the vCPU's registers into its save area.
function sevEsSyncVmsa(k: KvmCtx, vm: number, id: number): number {
  // lockdep_assert_held(&vcpu->mutex), added with the locking (cb923ee6a80f).
  if (k.version.launchFinishLocksVcpus) k.sync.assertHeld(k.vcpuStates.mutexWord(vm, id));
  // 9b9f7962e3e8 (7.1) refuses a vCPU already launched; before, a second LAUNCH_FINISH copies
  // into a VMSA the firmware owns (the RMP fault of the January 2026 report).
  if (k.vcpuStates.protectedState(vm, id)) {
    if (k.version.syncVmsaRejectsProtected) return -Errno.EINVAL;
    k.stats[C.vmsaResyncs]++;
    k.vcpuStates.report(LaunchReport.RESYNC, vm, id);
  }
  k.vcpuStates.setSyncing(vm, id, true);
  k.sync.point(P['sync_vmsa.before_copy']);
  k.vcpuStates.syncVmsa(vm, id);
  return 0;
}
