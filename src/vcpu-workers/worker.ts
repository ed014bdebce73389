// A vCPU thread: joins the sandbox's shared memory and runs guest steps and workloads; a fault
// runs the KVM fault path here, on this thread, as the kernel runs it on the vCPU's thread.

import { MailboxPlatform } from '../firmware/mailbox.js';
import { policyId, type PolicyName } from '../gmem/policy.js';
import { wordDescriber } from '../kvm/describe.js';
import { KvmCtx } from '../kvm/kvm.js';
import { KvmVcpu } from '../kvm/vcpu.js';
import { type SharedBuffers, mapBuffers } from '../shm/layout.js';
import { exposeToParent } from '../shm/rpc.js';
import { FreeSync } from '../shm/sync.js';
import { GuestCpu } from './guest.js';
import { type GuestOp, execGuestOp } from './ops.js';
import type { Outcome } from './outcome.js';
import { RunControl } from './runctl.js';
import { type WorkloadConfig, type WorkloadResult, runWorkload } from './workload.js';

export interface VcpuInit {
  buffers: SharedBuffers;
  policy: PolicyName;
  tid: number;
  vm: number;
}

class VcpuWorker {
  private cpu: GuestCpu | null = null;
  private rc: RunControl | null = null;

  init(init: VcpuInit): { id: number; slot: number } {
    const mem = mapBuffers(init.buffers);
    const sync = new FreeSync(mem, init.tid, wordDescriber(mem));
    const k = new KvmCtx(mem, sync, new MailboxPlatform(mem, sync), policyId(init.policy));
    const id = k.vms.addVcpu(init.vm);
    const slot = k.vcpus.claim(init.vm);
    if (id < 0 || slot < 0) throw new Error(`vm ${init.vm}: no vCPU slot left`);
    this.cpu = new GuestCpu(k, new KvmVcpu(init.vm, id, slot, k.vcpus, mem, sync));
    this.rc = new RunControl(mem);
    return { id, slot };
  }

  private get c(): GuestCpu {
    if (this.cpu === null) throw new Error('vCPU worker used before init');
    return this.cpu;
  }

  exec(op: GuestOp): Outcome {
    return execGuestOp(this.c, op);
  }

  run(cfg: WorkloadConfig): WorkloadResult {
    return runWorkload(this.c, this.rc!, cfg);
  }

  /** Throws inside the worker: for tests of crash reporting. */
  crash(message: string): never {
    throw new Error(message);
  }

  /** Exits the thread abruptly: for tests of a worker that dies mid-run. */
  exitNow(code: number): void {
    process.exit(code);
  }

  release(): void {
    if (this.cpu !== null) this.cpu.k.vcpus.release(this.cpu.vcpu.slot);
  }
}

export type VcpuWorkerApi = VcpuWorker;
exposeToParent(new VcpuWorker());
