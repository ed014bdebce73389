// LAUNCH_FINISH and the VM's vCPUs (arch/x86/kvm/svm/sev.c snp_launch_update_vmsa and
// sev_es_sync_vmsa; virt/kvm/kvm_main.c kvm_vm_ioctl_create_vcpu), on the calling thread: every
// online vCPU's VMSA is synced and becomes the guest's, after which KVM_RUN enters. A second
// LAUNCH_FINISH writes those VMSAs again up to 7.0 (an RMP fault; 9b9f7962e3e8 refuses it in
// 7.1), and a vCPU half created is skipped up to 7.0 (624bf3440d72 answers EBUSY in 7.1). The
// race of a KVM_RUN with the sync (cb923ee6a80f) needs two threads: the explorer's catalogue test
// finds it on 7.0 and runs 7.4 clean (test/tools/explore.test.ts).

import { describe, expect, it } from 'vitest';
import { auditQuiescent } from '../../src/checker/audit.js';
import { RunExit, kvmVcpuIoctlRun } from '../../src/kvm/kvm_vcpu_ioctl.js';
import { type KernelVersionName, Sandbox } from '../../src/index.js';
import { sumStats } from '../../src/shm/stats.js';
import { setupVm } from '../helpers/helpers.js';

async function launchingWithVcpus(kernel: KernelVersionName, vcpus: number, patches: string[] = []) {
  const sb = await Sandbox.create({ kernel, memory: '4MiB', patches });
  const s = await setupVm({ sb, type: 'snp', launch: 'started' });
  for (let i = 1; i < vcpus; i++) await s.vm.createVcpu();
  return s;
}

describe('LAUNCH_FINISH syncs the VMSA of every online vCPU', () => {
  it.each(['6.11', '7.0', '7.4'] as const)('%s: KVM_RUN fails entry before, enters after; no report', async (kernel) => {
    const { sb, vm } = await launchingWithVcpus(kernel, 2);
    const k = sb.k;
    expect([kvmVcpuIoctlRun(k, vm.id, 0), kvmVcpuIoctlRun(k, vm.id, 1)]).toEqual([RunExit.FAIL_ENTRY, RunExit.FAIL_ENTRY]);
    await vm.snpLaunchFinish();
    expect([kvmVcpuIoctlRun(k, vm.id, 0), kvmVcpuIoctlRun(k, vm.id, 1)]).toEqual([RunExit.ENTERED, RunExit.ENTERED]);
    expect([k.vcpuStates.protectedState(vm.id, 0), k.vcpuStates.protectedState(vm.id, 1)]).toEqual([true, true]);
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
    await sb.close();
  });
});

describe('a second LAUNCH_FINISH', () => {
  it('7.0: syncs both VMSAs again, pages the firmware owns (RMP faults), and only the firmware refuses it: EIO', async () => {
    const { sb, vm } = await launchingWithVcpus('7.0', 2);
    await vm.snpLaunchFinish();
    await expect(vm.snpLaunchFinish()).rejects.toMatchObject({ code: 'EIO' });
    expect(sumStats(sb.mem).vmsaResyncs).toBe(2);
    expect(auditQuiescent(sb.mem).violations).toEqual([
      {
        invariant: 'hostIsolation',
        by: 'auditor',
        vm: vm.id,
        detail:
          `2 VMSA(s) synced again after the firmware took them (RMP faults); the first: sev_es_sync_vmsa of vcpu 0 of vm ${vm.id}, ` +
          'already launched',
      },
    ]);
    await sb.close();
  });

  it.each([
    ['7.4', []],
    ['7.0', ['snp-launch-state']],
  ] as const)('%s %j: EINVAL before any VMSA is written', async (kernel, patches) => {
    const { sb, vm } = await launchingWithVcpus(kernel, 2, [...patches]);
    await vm.snpLaunchFinish();
    await expect(vm.snpLaunchFinish()).rejects.toMatchObject({ code: 'EINVAL' });
    expect(sumStats(sb.mem).vmsaResyncs).toBe(0);
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
    await sb.close();
  });
});

describe('a vCPU between created_vcpus++ and online_vcpus++ (kvm_vm_ioctl_create_vcpu unlocked, before 6418b715d5a2)', () => {
  // The window itself is another thread's; here the first half is done by hand.
  it('7.0: LAUNCH_FINISH skips it, as it would one created after; counted, not reported', async () => {
    const { sb, vm } = await launchingWithVcpus('7.0', 1);
    expect(sb.k.vms.addVcpu(vm.id)).toBe(1);
    await vm.snpLaunchFinish();
    expect(sumStats(sb.mem).vcpusSkippedByLaunchFinish).toBe(1);
    expect(sb.k.vcpuStates.protectedState(vm.id, 0)).toBe(true);
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
    await sb.close();
  });

  it('7.4: EBUSY (kvm_is_vcpu_creation_in_progress), nothing synced', async () => {
    const { sb, vm } = await launchingWithVcpus('7.4', 1);
    sb.k.vms.addVcpu(vm.id);
    await expect(vm.snpLaunchFinish()).rejects.toMatchObject({ code: 'EBUSY' });
    expect(sb.k.vcpuStates.protectedState(vm.id, 0)).toBe(false);
    expect(sumStats(sb.mem).vcpusSkippedByLaunchFinish).toBe(0);
    await sb.close();
  });
});
