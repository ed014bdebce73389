// What a vCPU thread serves: joins the sandbox's shared memory and runs guest steps and
// workloads; a fault runs the KVM fault path here, on this thread, as the kernel runs it on the
// vCPU's thread. The thread's entry is worker.ts; importing this file starts nothing.

import { asActor, openKernel, type PlatformKind, type SyncMode } from '../firmware/open.js';
import type { KernelVersionName } from '../gmem/version.js';
import { kvmVmIoctlCreateVcpu } from '../kvm/kvm_vcpu_ioctl.js';
import { KvmVcpu } from '../kvm/vcpu.js';
import { type SharedBuffers, mapBuffers } from '../shm/layout.js';
import { followRounds } from '../shm/bell.js';
import { SyncControl } from '../shm/sync/control.js';
import { type Violation, assertionViolation } from '../checker/violations.js';
import { SyncAbortError } from '../shm/sync/sync.js';
import { GuestCpu } from './guest.js';
import { type GuestOp, execGuestOp } from './ops.js';
import type { Outcome } from './outcome.js';
import { RunControl } from './runctl.js';
import { onlineChecker } from '../checker/online.js';
import { type WorkloadConfig, type WorkloadResult, runWorkload } from './guest-workload.js';

export interface VcpuInit {
  buffers: SharedBuffers;
  kernel: KernelVersionName;
  tid: number;
  vm: number;
  mode?: SyncMode;
  platform?: PlatformKind;
  /** A vCPU the VMM already created (id and slot): attach to it instead of creating one. */
  created?: { id: number; slot: number };
}

/** What a vCPU actor reads of an explorer round (vmm/explore/round.ts RoundPayload). */
interface ExploreRound {
  vcpus: Array<{ created: { vm: number; id: number; slot: number }; run: WorkloadConfig }>;
}

export class VcpuWorker {
  protected cpu: GuestCpu | null = null;
  protected rc: RunControl | null = null;

  init(init: VcpuInit): { id: number; slot: number } {
    const k = openKernel({
      buffers: init.buffers,
      kernel: init.kernel,
      tid: init.tid,
      mode: init.mode ?? 'free',
      platform: init.platform ?? 'mailbox',
    });
    const id = init.created?.id ?? kvmVmIoctlCreateVcpu(k, init.vm);
    const slot = init.created?.slot ?? k.vcpus.claim(init.vm);
    if (id < 0 || slot < 0) throw new Error(`vm ${init.vm}: no vCPU slot left`);
    this.cpu = new GuestCpu(k, new KvmVcpu(init.vm, id, slot, k.vcpus, k.mem, k.sync));
    this.rc = new RunControl(k.mem);
    return { id, slot };
  }

  protected get c(): GuestCpu {
    if (this.cpu === null) throw new Error('vCPU worker used before init');
    return this.cpu;
  }

  exec(op: GuestOp): Outcome {
    return asActor(this.c.k.sync, () => execGuestOp(this.c, op), false, onlineChecker(this.c.k));
  }

  run(cfg: WorkloadConfig): WorkloadResult {
    return asActor(this.c.k.sync, () => runWorkload(this.c, this.rc!, cfg), false, onlineChecker(this.c.k));
  }

  /** The explorer's schedules as vCPU actor `index` of each (vmm/explore/round.ts): the violations of the last one. */
  exploreFollow(bell: SharedArrayBuffer, fromGen: number, init: Omit<VcpuInit, 'vm' | 'created'>, index: number): Violation[] {
    const rs = followRounds(
      bell,
      fromGen,
      new SyncControl(mapBuffers(init.buffers)),
      (p: ExploreRound) => {
        const { created, run } = p.vcpus[index];
        this.init({ ...init, vm: created.vm, created });
        try {
          return this.run(run).violations;
        } catch (e) {
          // A model assertion the guest's faults fired: the schedule's finding (asActor ended the run).
          if (e instanceof SyncAbortError) throw e;
          return [assertionViolation(e, `vcpu ${index} (vm ${created.vm})`)];
        }
      },
      (r) => r.length > 0,
    );
    // The batch ends at the first schedule with a finding: only the last round's can have one.
    return rs[rs.length - 1] ?? [];
  }

  release(): void {
    if (this.cpu !== null) this.cpu.k.vcpus.release(this.cpu.vcpu.slot);
  }
}

export type VcpuWorkerApi = VcpuWorker;
