// The SNP launch's vCPU checks: no vCPU changes while LAUNCH_FINISH syncs its VMSA, and no VMSA
// is written again once the firmware owns it. Both are counted where the kernel does the act
// (kvm/kvm_vcpu_ioctl.ts, kvm/sev.ts); the first of each names its vCPU.

import { LaunchReport, VcpuStates } from '../../kvm/vcpu_state.js';
import type { Mem } from '../../shm/layout.js';
import type { Violation } from '../violations.js';

export function auditLaunch(mem: Mem, stats: { vmsaSyncRaces: number; vmsaResyncs: number }, add: (v: Violation) => void): void {
  const s = new VcpuStates(mem);
  const race = s.first(LaunchReport.RACE);
  if (stats.vmsaSyncRaces > 0 && race !== null)
    add({
      invariant: 'launchState',
      by: 'auditor',
      vm: race.vm,
      detail:
        `${stats.vmsaSyncRaces} vCPU ioctl(s) changed a vCPU while LAUNCH_FINISH synced its VMSA; the first: vcpu ${race.vcpu} of vm ${race.vm} ` +
        '(snp_launch_update_vmsa without its vCPUs locked)',
    });
  const resync = s.first(LaunchReport.RESYNC);
  if (stats.vmsaResyncs > 0 && resync !== null)
    add({
      invariant: 'hostIsolation',
      by: 'auditor',
      vm: resync.vm,
      detail:
        `${stats.vmsaResyncs} VMSA(s) synced again after the firmware took them (RMP faults); the first: sev_es_sync_vmsa of vcpu ${resync.vcpu} ` +
        `of vm ${resync.vm}, already launched`,
    });
}
