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
import { type LeaderHooks, type RoundPayload, type RoundPlan, type RoundRecord, leadRounds } from './explore-round.js';
import { followRounds } from '../shm/bell.js';
import { mapBuffers } from '../shm/layout.js';
import { SyncControl } from '../shm/sync.js';
import { type StressRegion, type StressTarget, type VmmOp, type VmmOpsConfig, type VmmOpsResult, randomLayout, runVmmOps } from './stress-ops.js';

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
  /** VMM threads that will run ops on this layout (each gets its own pre-fault vCPU per VM; default 1). */
  vmmThreads?: number;
  /**
   * Adds an SNP VM left launching beside the running ones, on a guest_memfd of its own over the
   * same gfns, for 'populate' ops (no running VM shares its inode: no kernel can fault a page a
   * populate is measuring, as SNP vCPUs do not run before LAUNCH_FINISH).
   */
  launchingBeside?: boolean;
  /** vCPUs to create over all running VMs, round robin (instead of vcpusPerVm). */
  vcpusTotal?: number;
}

/** The layout as another VMM thread of the process attaches to it (see attachStress). */
export interface SharedStressTarget {
  regions: StressRegion[];
  pages: number;
  vms: number[];
  populateVm: number;
  linked: boolean;
  /** Per VMM thread, per VM: the vCPU its KVM_PRE_FAULT_MEMORY goes through. */
  prefault: CreatedVcpu[][];
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
  /** vCPU slots setupStress claimed for pre-fault handles (every VMM thread's), released at closeAll. */
  private prefaultSlots: number[] = [];

  init(descriptor: SandboxDescriptor, tid: number, opts: { mode?: SyncMode; platform?: PlatformKind } = {}): void {
    this.sb = Sandbox.attach(descriptor, tid, opts);
    this.ex = new IoctlExecutor(this.sb);
    this.target = null;
    this.stressFds = [];
    this.prefaultSlots = [];
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
  setupStress(cfg: StressSetup): { vms: number[]; file: number; gfnStart: number; vcpus: CreatedVcpu[]; shared: SharedStressTarget } {
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
    const threads = cfg.vmmThreads ?? 1;
    const prefault: CreatedVcpu[][] = Array.from({ length: threads }, () => []);
    const targetRegions: StressRegion[] = [];
    // Attributes, launch state and one pre-fault handle per VMM thread, for a VM whose memslots exist.
    const finish = (vm: Vm, launching: boolean): void => {
      const priv = Math.floor(cfg.pages * cfg.privateShare);
      if (priv > 0) vm.setMemoryAttributesSync({ address: gfnStart * PAGE_SIZE, size: priv * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
      if (vm.type === 'snp') {
        vm.snpLaunchStartSync();
        if (!launching) vm.snpLaunchFinishSync();
      }
      for (let t = 0; t < threads; t++) {
        const id = sb.k.vms.addVcpu(vm.id);
        const slot = sb.k.vcpus.claim(vm.id);
        if (id < 0 || slot < 0) throw new Error(`vm ${vm.id}: no vCPU slot left for a pre-fault handle`);
        prefault[t].push({ vm: vm.id, id, slot });
        this.prefaultSlots.push(slot);
      }
    };
    vms.forEach((vm, i) => {
      for (const r of regions) {
        const first = files.get(r.file)!;
        const gmem = i === 0 ? first : vm.linkGuestMemfdSync(first);
        if (i > 0) this.stressFds.push(gmem);
        const userPage = i * cfg.pages + r.userPage;
        vm.setUserMemoryRegion2Sync({ slot: r.slot, flags: ['guest_memfd'], guestPhysAddr: r.gfn * PAGE_SIZE, memorySize: r.npages * PAGE_SIZE, userspaceAddr: userPage * PAGE_SIZE, guestMemfd: gmem, guestMemfdOffset: r.pgoff * PAGE_SIZE });
        if (i === 0) targetRegions.push({ vm: vm.id, slot: r.slot, gfn: r.gfn, npages: r.npages, pgoff: r.pgoff, userPage, file: gmem.file, fd: gmem.fd, filePages: gmem.fstat().size / PAGE_SIZE });
      }
      finish(vm, i === 0 && cfg.populateFirstVm === true);
    });
    let populateVm = cfg.populateFirstVm ? vms[0].id : -1;
    const all = [...vms];
    if (cfg.launchingBeside) {
      const vm = sb.createVmSync({ type: 'snp' });
      const gmem = vm.createGuestMemfdSync({ size: cfg.pages * PAGE_SIZE });
      vm.setUserMemoryRegion2Sync({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: gfnStart * PAGE_SIZE, memorySize: cfg.pages * PAGE_SIZE, userspaceAddr: cfg.vms * cfg.pages * PAGE_SIZE, guestMemfd: gmem, guestMemfdOffset: 0 });
      finish(vm, true);
      populateVm = vm.id;
      all.push(vm);
      // Its file is a target too: punch, fallocate, hwpoison, close and memslot ops race its populates.
      targetRegions.push({ vm: vm.id, slot: 0, gfn: gfnStart, npages: cfg.pages, pgoff: 0, userPage: cfg.vms * cfg.pages, file: gmem.file, fd: gmem.fd, filePages: cfg.pages });
      this.stressFds.push(gmem);
    }
    const shared: SharedStressTarget = { regions: targetRegions, pages: cfg.pages, vms: all.map((v) => v.id), populateVm, linked: cfg.vms > 1, prefault };
    // Thread 0 works on its own copy: a close-and-rebuild moves its regions to new fds.
    this.attachStress(structuredClone(shared), 0);
    const target = this.target!;
    const running = vms.filter((vm) => vm.id !== populateVm);
    const vcpus: CreatedVcpu[] = [];
    const perVm = running.map(() => cfg.vcpusPerVm ?? 0);
    if (cfg.vcpusTotal !== undefined) for (let c = 0; c < running.length; c++) perVm[c] = Math.floor(cfg.vcpusTotal / running.length) + (c < cfg.vcpusTotal % running.length ? 1 : 0);
    running.forEach((vm, v) => {
      for (let c = 0; c < perVm[v]; c++) {
        const id = sb.k.vms.addVcpu(vm.id);
        const slot = sb.k.vcpus.claim(vm.id);
        if (id < 0 || slot < 0) throw new Error(`vm ${vm.id}: no vCPU slot left`);
        vcpus.push({ vm: vm.id, id, slot });
      }
    });
    return { vms: target.vms, file: targetRegions[0].file, gfnStart, vcpus, shared };
  }

  /** Another VMM thread of the process takes the layout setupStress built: same fds, its own pre-fault vCPUs. */
  attachStress(shared: SharedStressTarget, thread: number): void {
    const k = this.s.k;
    const prefaultVcpus = shared.prefault[thread].map((c) => new KvmVcpu(c.vm, c.id, c.slot, k.vcpus, this.s.mem, k.sync));
    this.target = { regions: shared.regions, pages: shared.pages, vms: shared.vms, prefaultVcpus, populateVm: shared.populateVm, linked: shared.linked };
  }

  runOps(cfg: VmmOpsConfig): VmmOpsResult {
    const t = this.target;
    if (t === null) throw new Error('runOps before setupStress');
    return asActor(this.s.k.sync, () => runVmmOps(this.s, new RunControl(this.s.mem), t, cfg), false, onlineChecker(this.s.k));
  }

  /** The explorer's schedules, this thread leading (explore-round.ts): one record per schedule run. */
  exploreLead(plan: RoundPlan): RoundRecord[] {
    const tid = plan.vmmTids[0];
    const hooks: LeaderHooks = {
      mem: mapBuffers(plan.descriptor.buffers),
      init: () => this.init(plan.descriptor, tid, { mode: 'controlled', platform: 'direct' }),
      setup: (cfg) => this.setupStress(cfg),
      runOps: (cfg) => this.runOps(cfg),
      closeAll: () => this.closeAll(),
    };
    return leadRounds(plan, hooks);
  }

  /** The explorer's schedules as VMM thread `t` of each: the leader's layout, its share of the ops (null: aborted). */
  exploreFollow(bell: SharedArrayBuffer, fromGen: number, descriptor: SandboxDescriptor, tid: number, t: number): Array<Record<VmmOp, number> | null> {
    return followRounds(
      bell,
      fromGen,
      new SyncControl(mapBuffers(descriptor.buffers)),
      (p: RoundPayload) => {
        this.init(descriptor, tid, { mode: 'controlled', platform: 'direct' });
        this.attachStress(p.shared, t);
        return this.runOps(p.vmmOps[t]).ops;
      },
      () => false,
    );
  }

  /** Closes every guest_memfd this VMM holds (teardown: folios go back to the allocator). */
  closeAll(): void {
    for (const slot of this.prefaultSlots) this.s.k.vcpus.release(slot);
    this.prefaultSlots = [];
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
