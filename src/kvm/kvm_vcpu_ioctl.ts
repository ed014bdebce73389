// virt/kvm/kvm_main.c: KVM_CREATE_VCPU and the vCPU ioctls a VMM's vCPU thread issues, as far as
// an SNP launch sees them (created_vcpus, online_vcpus, vcpu->mutex, the register state that
// LAUNCH_FINISH copies into each VMSA). The guest's own run loop is vcpu-workers/guest.ts.

import { Errno } from '../shm/errno.js';
import { LIMITS } from '../shm/limits.js';
import { P } from '../shm/points.js';
import { C } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import type { KvmCtx } from './ctx.js';
import { withMutex } from './locking.js';
import { LaunchReport } from './vcpu_state.js';

/** What a KVM_RUN of a launching VM's vCPU ended with. */
export const RunExit = { ENTERED: 0, FAIL_ENTRY: 1 } as const;

// kvm_vm_ioctl_create_vcpu: the id, or -EINVAL past KVM_MAX_VCPUS. Before 6418b715d5a2 (7.3)
// kvm->lock is dropped between created_vcpus++ and online_vcpus++, around kvm_arch_vcpu_create.
export function kvmVmIoctlCreateVcpu(k: KvmCtx, vm: number): number {
  const lock = k.vms.kvmLockWord(vm);
  if (k.version.createVcpuUnderKvmLock) {
    return withMutex(k, lock, LockClass.KVM_LOCK, () => {
      const id = createdVcpusInc(k, vm);
      if (id >= 0) vcpuOnline(k, vm, id);
      return id;
    });
  }
  const id = withMutex(k, lock, LockClass.KVM_LOCK, () => createdVcpusInc(k, vm));
  if (id < 0) return id;
  k.sync.point(P['create_vcpu.unlocked']);
  withMutex(k, lock, LockClass.KVM_LOCK, () => vcpuOnline(k, vm, id));
  return id;
}

function createdVcpusInc(k: KvmCtx, vm: number): number {
  k.sync.assertHeld(k.vms.kvmLockWord(vm));
  const id = k.vms.addVcpu(vm);
  if (id < 0) return -Errno.EINVAL;
  k.vcpuStates.init(vm, id);
  return id;
}

// The second half: xa_insert into vcpu_array, then atomic_inc(&kvm->online_vcpus).
function vcpuOnline(k: KvmCtx, vm: number, id: number): void {
  k.sync.assertHeld(k.vms.kvmLockWord(vm));
  k.vcpuStates.setOnline(vm, id);
  k.vms.incOnlineVcpus(vm);
}

// kvm_is_vcpu_creation_in_progress (624bf3440d72)
export function kvmIsVcpuCreationInProgress(k: KvmCtx, vm: number): boolean {
  k.sync.assertHeld(k.vms.kvmLockWord(vm));
  return k.vms.createdVcpus(vm) !== k.vms.onlineVcpus(vm);
}

/** Runs `fn` with vcpu->mutex held, as kvm_vcpu_ioctl does around every vCPU ioctl. */
export function withVcpuMutex<T>(k: KvmCtx, vm: number, id: number, fn: () => T): T {
  return withMutex(k, k.vcpuStates.mutexWord(vm, id), LockClass.VCPU_MUTEX, fn);
}

// kvm_vcpu_ioctl(KVM_RUN): vcpu_load and kvm_arch_vcpu_ioctl_run change the vCPU's state (the
// model: one register write), then the vCPU enters. An SNP vCPU enters once its VMSA is the
// guest's; before, VMRUN fails (KVM_EXIT_FAIL_ENTRY, KVM_RUN still returning 0).
export function kvmVcpuIoctlRun(k: KvmCtx, vm: number, id: number): number {
  assertVcpu(k, vm, id);
  return withVcpuMutex(k, vm, id, () => {
    writeRegs(k, vm, id);
    if (k.vms.isSnp(vm) && !k.vcpuStates.protectedState(vm, id)) return RunExit.FAIL_ENTRY;
    return RunExit.ENTERED;
  });
}

/**
 * A change of the vCPU's state under vcpu->mutex. LAUNCH_FINISH copying this vCPU's state into its VMSA at
 * the same time is the race cb923ee6a80f closes: the measured save area is not the state the
 * vCPU has, and the vCPU runs while its VMSA changes hands (a host crash at worst).
 */
function writeRegs(k: KvmCtx, vm: number, id: number): void {
  const s = k.vcpuStates;
  if (s.syncing(vm, id)) {
    k.stats[C.vmsaSyncRaces]++;
    s.report(LaunchReport.RACE, vm, id);
  }
  s.writeRegs(vm, id);
}

function assertVcpu(k: KvmCtx, vm: number, id: number): void {
  // A vCPU fd exists only once kvm_vm_ioctl_create_vcpu put the vCPU online.
  if (!(id >= 0 && id < LIMITS.MAX_VCPUS_PER_VM && k.vcpuStates.online(vm, id)))
    throw new Error(`vcpu ioctl on vm ${vm} vcpu ${id}: no such vCPU fd`);
}
