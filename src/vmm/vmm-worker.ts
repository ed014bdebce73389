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
import { onlineChecker } from '../vcpu-workers/online-audit.js';
import type { SandboxDescriptor } from './build.js';
import { IoctlExecutor } from './ioctl-exec.js';
import { GuestMemfd, Sandbox, type Vm } from './sandbox.js';
import type { IoctlStep } from './scenario/schema.js';
import { type StressRegion, type StressTarget, type VmmOpsConfig, type VmmOpsResult, randomLayout, runVmmOps } from './stress-ops.js';

export interface StressSetup {
  vmType: VmTypeName;
  vms: number;
  /** guest pages each VM maps (gpa 0 .. pages), all backed by one guest_memfd. */
  pages: number;
  /** Share of the range made private at the start (the rest is shared). */
  privateShare: number;
  /** VM 0 is an SNP VM left between LAUNCH_START and LAUNCH_FINISH, for 'populate' ops. */
  populateFirstVm?: boolean;
  /** Draw a random layout from this seed (one VM only; absent: identity, gfn i at index i). */
  layoutSeed?: number;
  /**
   * vCPUs to create (KVM_CREATE_VCPU, here on the VMM) per running VM, for vCPU workers that
   * then attach to them by id and slot: created in this order, they are the same every time.
   */
  vcpusPerVm?: number;
}

/** A vCPU setupStress created for a vCPU worker. */
export interface CreatedVcpu {
  vm: number;
  id: number;
  slot: number;
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
    return asActor(this.s.k.sync, () => this.ex!.exec(step), false, onlineChecker(this.s.k));
  }

  /**
   * Builds the stress layout. Identity: every VM binds one guest_memfd (linked for VMs after the
   * first) by slot 0, gfn i at index i. Random (one VM): the range starts at a random gfn and is
   * split in two memslots at a random page, the first at a random offset into its file, the
   * second either further into the same file or in a second file.
   */
  setupStress(cfg: StressSetup): { vms: number[]; file: number; gfnStart: number; vcpus: CreatedVcpu[] } {
    const sb = this.s;
    const vms: Vm[] = [];
    for (let i = 0; i < cfg.vms; i++) vms.push(sb.createVmSync({ type: i === 0 && cfg.populateFirstVm ? 'snp' : cfg.vmType }));
    const regions = cfg.layoutSeed !== undefined && cfg.vms === 1 && cfg.pages > 1 ? randomLayout(cfg.pages, cfg.layoutSeed) : [{ slot: 0, gfn: 0, npages: cfg.pages, pgoff: 0, userPage: 0, file: 0, size: cfg.pages }];
    // One file per distinct `file` number of the layout, sized to the regions it backs.
    const files = new Map<number, GuestMemfd>();
    for (const r of regions) {
      if (files.has(r.file)) continue;
      const size = Math.max(...regions.filter((x) => x.file === r.file).map((x) => x.size));
      files.set(r.file, vms[0].createGuestMemfdSync({ size: size * PAGE_SIZE }));
    }
    this.stressFds = [...files.values()];
    const gfnStart = regions[0].gfn;
    const prefaultVcpus: KvmVcpu[] = [];
    const targetRegions: StressRegion[] = [];
    vms.forEach((vm, i) => {
      for (const r of regions) {
        const first = files.get(r.file)!;
        const gmem = i === 0 ? first : vm.linkGuestMemfdSync(first);
        if (i > 0) this.stressFds.push(gmem);
        const userPage = i * cfg.pages + r.userPage;
        vm.setUserMemoryRegion2Sync({ slot: r.slot, flags: ['guest_memfd'], guestPhysAddr: r.gfn * PAGE_SIZE, memorySize: r.npages * PAGE_SIZE, userspaceAddr: userPage * PAGE_SIZE, guestMemfd: gmem, guestMemfdOffset: r.pgoff * PAGE_SIZE });
        if (i === 0) targetRegions.push({ slot: r.slot, gfn: r.gfn, npages: r.npages, pgoff: r.pgoff, userPage, file: gmem.file, fd: gmem.fd });
      }
      const priv = Math.floor(cfg.pages * cfg.privateShare);
      if (priv > 0) vm.setMemoryAttributesSync({ address: gfnStart * PAGE_SIZE, size: priv * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
      if (vm.type === 'snp') {
        vm.snpLaunchStartSync();
        if (!(i === 0 && cfg.populateFirstVm)) vm.snpLaunchFinishSync();
      }
      const k = sb.k;
      const id = k.vms.addVcpu(vm.id);
      const slot = k.vcpus.claim(vm.id);
      prefaultVcpus.push(new KvmVcpu(vm.id, id, slot, k.vcpus, sb.mem, k.sync));
    });
    this.target = { regions: targetRegions, pages: cfg.pages, vms: vms.map((v) => v.id), prefaultVcpus, populateVm: cfg.populateFirstVm ? vms[0].id : -1 };
    const vcpus: CreatedVcpu[] = [];
    for (const vm of vms) {
      if (vm.id === this.target.populateVm) continue;
      for (let c = 0; c < (cfg.vcpusPerVm ?? 0); c++) {
        const id = sb.k.vms.addVcpu(vm.id);
        const slot = sb.k.vcpus.claim(vm.id);
        if (id < 0 || slot < 0) throw new Error(`vm ${vm.id}: no vCPU slot left`);
        vcpus.push({ vm: vm.id, id, slot });
      }
    }
    return { vms: this.target.vms, file: targetRegions[0].file, gfnStart, vcpus };
  }

  runOps(cfg: VmmOpsConfig): VmmOpsResult {
    const t = this.target;
    if (t === null) throw new Error('runOps before setupStress');
    return asActor(this.s.k.sync, () => runVmmOps(this.s, new RunControl(this.s.mem), t, cfg), false, onlineChecker(this.s.k));
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
