// The VMM thread: the user-space VMM's ioctls (scenario steps, and the stress op mix) on a
// Sandbox attached to the shared memory, firmware commands going through the mailbox.

import { asActor, type PlatformKind, type SyncMode } from '../firmware/open.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../kvm/attributes.js';
import { KvmVcpu } from '../kvm/vcpu.js';
import type { VmTypeName } from '../kvm/vm.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { exposeToParent } from '../shm/rpc.js';
import type { Outcome } from '../vcpu-workers/outcome.js';
import { RunControl } from '../vcpu-workers/runctl.js';
import type { SandboxDescriptor } from './build.js';
import { IoctlExecutor } from './ioctl-exec.js';
import { type GuestMemfd, Sandbox, type Vm } from './sandbox.js';
import type { IoctlStep } from './scenario/schema.js';
import { type StressTarget, type VmmOpsConfig, type VmmOpsResult, runVmmOps } from './stress-ops.js';

export interface StressSetup {
  vmType: VmTypeName;
  vms: number;
  /** guest pages each VM maps (gpa 0 .. pages), all backed by one guest_memfd. */
  pages: number;
  /** Share of the range made private at the start (the rest is shared). */
  privateShare: number;
  /** VM 0 is an SNP VM left between LAUNCH_START and LAUNCH_FINISH, for 'populate' ops. */
  populateFirstVm?: boolean;
}

class VmmWorker {
  private sb: Sandbox | null = null;
  private ex: IoctlExecutor | null = null;
  private target: StressTarget | null = null;
  private stressFds: GuestMemfd[] = [];

  init(descriptor: SandboxDescriptor, tid: number, opts: { mode?: SyncMode; platform?: PlatformKind } = {}): void {
    this.sb = Sandbox.attach(descriptor, tid, opts);
    this.ex = new IoctlExecutor(this.sb);
    this.target = null;
    this.stressFds = [];
  }

  private get s(): Sandbox {
    if (this.sb === null) throw new Error('VMM worker used before init');
    return this.sb;
  }

  /** Creates the scenario's VMs; returns their ids in order. */
  createVms(specs: Array<{ name: string; type: VmTypeName }>): number[] {
    return specs.map((v) => {
      const vm = this.s.createVmSync({ type: v.type });
      this.ex!.vms.set(v.name, vm);
      return vm.id;
    });
  }

  exec(step: IoctlStep): Outcome {
    return this.ex!.exec(step);
  }

  /** An ioctl step as an actor of a controlled run (a model checker's parallel group). */
  execActor(step: IoctlStep): Outcome {
    return asActor(this.s.k.sync, () => this.ex!.exec(step));
  }

  /** Builds the stress layout: VMs bound to one guest_memfd (linked for VMs after the first). */
  setupStress(cfg: StressSetup): { vms: number[]; file: number } {
    const sb = this.s;
    const size = cfg.pages * PAGE_SIZE;
    const vms: Vm[] = [];
    for (let i = 0; i < cfg.vms; i++) vms.push(sb.createVmSync({ type: i === 0 && cfg.populateFirstVm ? 'snp' : cfg.vmType }));
    const first = vms[0].createGuestMemfdSync({ size });
    this.stressFds = [first];
    const prefaultVcpus: KvmVcpu[] = [];
    vms.forEach((vm, i) => {
      const gmem = i === 0 ? first : vm.linkGuestMemfdSync(first);
      if (i > 0) this.stressFds.push(gmem);
      vm.setUserMemoryRegion2Sync({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: size, userspaceAddr: i * size, guestMemfd: gmem, guestMemfdOffset: 0 });
      const priv = Math.floor(cfg.pages * cfg.privateShare);
      if (priv > 0) vm.setMemoryAttributesSync({ address: 0, size: priv * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
      if (vm.type === 'snp') {
        vm.snpLaunchStartSync();
        if (!(i === 0 && cfg.populateFirstVm)) vm.snpLaunchFinishSync();
      }
      const k = sb.k;
      const id = k.vms.addVcpu(vm.id);
      const slot = k.vcpus.claim(vm.id);
      prefaultVcpus.push(new KvmVcpu(vm.id, id, slot, k.vcpus, sb.mem, k.sync));
    });
    this.target = { file: first.file, fd: first.fd, pages: cfg.pages, vms: vms.map((v) => v.id), prefaultVcpus, populateVm: cfg.populateFirstVm ? vms[0].id : -1 };
    return { vms: this.target.vms, file: first.file };
  }

  runOps(cfg: VmmOpsConfig): VmmOpsResult {
    const t = this.target;
    if (t === null) throw new Error('runOps before setupStress');
    return asActor(this.s.k.sync, () => runVmmOps(this.s, new RunControl(this.s.mem), t, cfg));
  }

  /** Closes every guest_memfd this VMM holds (teardown: folios go back to the allocator). */
  closeAll(): void {
    for (const v of this.target?.prefaultVcpus ?? []) this.s.k.vcpus.release(v.slot);
    this.s.closeAllFds();
  }

  /** Fault injection, from the VMM's side. */
  injectFirmwareFailures(cmd: 'RMPUPDATE' | 'LAUNCH_UPDATE' | 'LAUNCH_START' | 'LAUNCH_FINISH', n: number): void {
    this.s.injectFirmwareFailures(cmd, n);
  }
  reserveHostPages(pages: number): void {
    this.s.reserveHostPages(pages);
  }
  hwpoisonOffset(offset: number): Outcome {
    const g = this.stressFds[0];
    try {
      g.hwpoisonSync(offset);
      return { result: 'ok' };
    } catch (e) {
      return { result: (e as { code?: string }).code ?? 'error', detail: (e as Error).message };
    }
  }
}

export type VmmWorkerApi = VmmWorker;
exposeToParent(new VmmWorker());
