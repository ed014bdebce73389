// arch/x86/kvm/svm/sev.c: the guest_memfd arch hooks for SNP and the SNP launch ioctls.

import type { ArchGmemHooks, PostPopulate } from '../gmem/arch.js';
import { hostCopy } from '../gmem/filemap.js';
import { gmemPopulate } from '../gmem/populate.js';
import { Errno } from '../shm/errno.js';
import { PAGE_SIZE, isPageAligned } from '../shm/limits.js';
import { C } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import type { KvmCtx } from './ctx.js';
import { withMutex } from './locking.js';
import { KVM_MEM_GUEST_MEMFD } from './memslots.js';
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

  hostWritable(pfn: Pfn): boolean {
    return !this.psp.rmpAssigned(pfn);
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

// sev_mem_enc_ioctl(KVM_SEV_SNP_LAUNCH_UPDATE)
export function snpLaunchUpdate(
  k: KvmCtx,
  psp: SnpPlatform,
  vm: number,
  gfnStart: number,
  len: number,
  type: number,
  src: Uint8Array | null,
): LaunchUpdateResult {
  return withKvmLock(k, vm, () => snpLaunchUpdateLocked(k, psp, vm, gfnStart, len, type, src));
}

// snp_launch_update -> kvm_gmem_populate -> sev_gmem_post_populate
function snpLaunchUpdateLocked(
  k: KvmCtx,
  psp: SnpPlatform,
  vm: number,
  gfnStart: number,
  len: number,
  type: number,
  src: Uint8Array | null,
): LaunchUpdateResult {
  const fail = (ret: number): LaunchUpdateResult => ({ ret, pagesDone: 0, populateErr: 0, fwError: 0 });
  // sev_mem_enc_ioctl: mutex_lock(&kvm->lock) around every command.
  k.sync.assertHeld(k.vms.kvmLockWord(vm));
  // snp_launch_update: `if (!sev_snp_guest(kvm) || !sev->snp_context) return -EINVAL;` (START
  // and FINISH answer -ENOTTY for a VM that is not SNP).
  if (!k.vms.isSnp(vm)) return fail(-Errno.EINVAL);
  if (k.vms.snpPhase(vm) === SnpPhase.NONE) return fail(-Errno.EINVAL);
  if (!isPageAligned(len) || len < 0 || !VALID_PAGE_TYPES.has(type)) return fail(-Errno.EINVAL);
  if (type !== SnpPageType.ZERO && (src === null || src.length < len)) return fail(-Errno.EFAULT);
  const npages = len / PAGE_SIZE;
  let fwError = 0;
  const asid = k.vms.asid(vm);
  const post: PostPopulate = (_vm, gfn, pfn, i) => {
    // sev_gmem_post_populate, one page: a shared gfn, or an RMP entry not in its initial
    // hypervisor-owned state (an up-to-date folio before de80252414f3 has one), is EINVAL.
    if (!k.attrs.isPrivate(vm, gfn)) return -Errno.EINVAL;
    if (psp.rmpAssigned(pfn)) return -Errno.EINVAL;
    if (src !== null && type !== SnpPageType.ZERO && !hostCopy(k.g, pfn, src.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)))
      return -Errno.EFAULT;
    k.stats[C.rmpUpdates]++;
    // rmp_make_private's error (-EFAULT from rmpupdate) is returned as is.
    const rr = psp.rmpMakePrivate(pfn, gfn, asid, true);
    if (rr < 0) return rr;
    const fw = psp.launchUpdate(asid, pfn, gfn, type);
    if (fw !== SevRet.SUCCESS) {
      fwError = fw;
      psp.rmpMakeShared(pfn);
      return -Errno.EIO;
    }
    return 0;
  };
  const slotsLock = k.vms.slotsLockWord(vm);
  const srcu = k.vms.srcu(vm);
  k.sync.mutexLock(slotsLock, LockClass.SLOTS);
  k.sync.srcuReadLock(srcu, LockClass.SRCU);
  try {
    const s = k.memslots.lookup(vm, gfnStart);
    // kvm_slot_can_be_private
    if (s === NO_HANDLE || (k.memslots.flags(vm, s) & KVM_MEM_GUEST_MEMFD) === 0) return fail(-Errno.EINVAL);
    k.memslots.check(vm, s, Site['kvm_gmem_populate: slot'], k.sync.tid);
    const m = k.memslots.info(vm, s);
    const count = gmemPopulate(
      k.g,
      vm,
      { fileWord: k.memslots.gmemFileWord(vm, s), slot: s, baseGfn: m.baseGfn, npages: m.npages, pgoff: m.gmemPgoff },
      gfnStart,
      npages,
      (gfn) => k.attrs.isPrivate(vm, gfn),
      post,
    );
    if (count < 0) return { ret: -Errno.EIO, pagesDone: 0, populateErr: count, fwError };
    return { ret: 0, pagesDone: count, populateErr: 0, fwError };
  } finally {
    k.sync.srcuReadUnlock(srcu);
    k.sync.mutexUnlock(slotsLock);
    kvmTaskWork(k);
  }
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
  if (k.vms.snpPhase(vm) === SnpPhase.NONE) return -Errno.EINVAL;
  const fw = psp.launchFinish(k.vms.asid(vm));
  if (fw !== SevRet.SUCCESS) return -Errno.EIO;
  k.vms.setSnpPhase(vm, SnpPhase.FINISHED);
  k.vms.setPreFaultAllowed(vm);
  return 0;
}
