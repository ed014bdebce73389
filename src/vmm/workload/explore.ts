// The explorer's workload: what one schedule runs (VMs, pages, vCPU accesses, the VMM's op mix),
// the shape each seed gives it, and from these the configuration of every actor of a schedule:
// the layout the leading VMM thread builds, each VMM thread's ops, each vCPU actor's guest
// workload. The controller (explore/explorer.ts) and the VMM thread that leads the schedules
// (explore/round.ts) only run what this file describes.

import type { BugName } from '../../gmem/bugs.js';
import type { ModuleParams } from '../../gmem/params.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../../gmem/flags.js';
import { type KernelVersionName, VERSIONS } from '../../gmem/version.js';
import type { VmTypeName } from '../../kvm/vm.js';
import { Prng, subSeed } from '../../shm/prng.js';
import type { WorkloadConfig } from '../../vcpu-workers/guest-workload.js';
import type { StressSetup } from './layout.js';
import { parseMix } from './mix.js';
import type { VmmOpsConfig } from './vmm-ops.js';
import { plainSlotGfns } from './ops/memslot.js';

export interface ExploreWorkload {
  vmType: VmTypeName;
  vms: number;
  /** Guest pages every VM maps: few, so actors collide. */
  pages: number;
  vcpus: number;
  accesses: number;
  writeRatio: number;
  ops: string;
  vmmOps: number;
  populateFirstVm: boolean;
  /** Share of a vCPU's steps that are KVM_PRE_FAULT_MEMORY on its own vCPU (racing the VMM's ioctls). */
  prefaultRatio: number;
  /**
   * 'random': each schedule draws its layout (one VM only): the range at a random gfn, split in
   * two memslots, at offsets into one file or two; 'identity': one slot, gfn i at index i.
   */
  layout: 'random' | 'identity';
  /** VMM threads issuing the ops (their share of vmmOps each), so that two ioctls overlap. */
  vmmThreads: number;
  /**
   * Share of schedules (of a one-VM workload) run with two VMs instead (see scheduleShape): two
   * running VMs bound to one inode by link, or the VM with an SNP VM launching beside it.
   */
  multiVmShare: number;
  /**
   * Share of schedules (of a one-VM workload, on a kernel with GMEM_ONLY memslots: 6.18 on) run
   * on a default VM instead, whose memslots bind MMAP | INIT_SHARED guest_memfds: its guest
   * faults take the file's folios, and the VMM maps the files and touches them (see scheduleShape).
   * Absent in schedules saved before it existed: those ran without it.
   */
  gmemOnlyShare?: number;
}

export const DEFAULT_WORKLOAD: ExploreWorkload = {
  vmType: 'snp',
  vms: 1,
  pages: 4,
  vcpus: 2,
  accesses: 8,
  writeRatio: 0.5,
  ops: 'punch=3,convert=1,fallocate=1,prefault=1,populate=1,memslot=1,memflags=1,plainslot=1,badbind=1,close=1,hwpoison=1,fwfail=1,oom=1,signal=1,mmap=1,touch=6,munmap=1,vcpu=2,convert2=2,pin=2',
  vmmOps: 4,
  populateFirstVm: false,
  prefaultRatio: 0.15,
  layout: 'random',
  vmmThreads: 2,
  multiVmShare: 0.25,
  gmemOnlyShare: 0.25,
};

/** Workloads that give a bug a way to show (the op that reaches its code). */
export const BUG_WORKLOADS: Partial<Record<BugName, Partial<ExploreWorkload>>> = {
  'get-pfn-unlocked-prepare': { ops: 'fallocate=1', vmmOps: 1, pages: 2 },
  'memslot-update-skips-synchronize-srcu': { vmType: 'sw-protected', ops: 'memslot=1', vmmOps: 1 },
  // Both orders in one schedule: an SEV command (kvm->lock, then slots_lock) and a memslot update.
  'memslot-update-takes-kvm-lock': { vms: 2, populateFirstVm: true, ops: 'populate=1,memslot=1', vmmOps: 4 },
  // Host mappings exist on a default VM's GMEM_ONLY memslots only (6.18 on): every schedule runs one.
  'truncate-skips-host-unmap': { gmemOnlyShare: 1, ops: 'punch=2,touch=3', vmmOps: 4 },
  'host-fault-skips-clear': { gmemOnlyShare: 1, ops: 'touch=1', vmmOps: 2 },
  // In-place conversion (7.4 with gmem_in_place_conversion=1): conversions racing pins and host faults.
  // Its window is a pin between the reference check and the unmap: three threads on two pages.
  'convert-checks-refs-before-unmap': { ops: 'convert2=2,pin=3,touch=2', vmmOps: 12, vmmThreads: 3, pages: 2, multiVmShare: 0 },
  'convert-skips-lru-drain': { ops: 'convert2=2,touch=1', vmmOps: 4, multiVmShare: 0 },
  'convert-wrong-expected-refcount': { ops: 'convert2=2,pin=3,touch=2', vmmOps: 12, vmmThreads: 3, pages: 2, multiVmShare: 0 },
  'host-fault-skips-invalidate-lock': { ops: 'convert2=2,touch=2', vmmOps: 6, multiVmShare: 0 },
};

/**
 * The kernel and module parameters a planted bug's code needs, where upstream's defaults do not
 * reach it: explore hunts it there unless --kernel (or --module-param) says otherwise.
 */
const IN_PLACE: { kernel: KernelVersionName; moduleParams: ModuleParams } = {
  kernel: '7.4',
  moduleParams: { gmem_in_place_conversion: true },
};
export const BUG_KERNELS: Partial<Record<BugName, { kernel: KernelVersionName; moduleParams: ModuleParams }>> = {
  'convert-checks-refs-before-unmap': IN_PLACE,
  'convert-skips-lru-drain': IN_PLACE,
  'convert-wrong-expected-refcount': IN_PLACE,
  'host-fault-skips-invalidate-lock': IN_PLACE,
};

export function workloadFor(bug: BugName | null, over: Partial<ExploreWorkload> = {}): ExploreWorkload {
  return { ...DEFAULT_WORKLOAD, ...(bug ? BUG_WORKLOADS[bug] : {}), ...over };
}

/** The most VMM threads a controlled workload runs. */
export const MAX_VMM_THREADS = 4;

/** The most explorers one search runs at once (explore --jobs), each with its own sandbox. */
export const MAX_EXPLORE_JOBS = 16;

export interface ScheduleShape {
  /** Running VMs (with populateFirstVm, VM 0 of them launches instead), bound to one inode by link when several. */
  vms: number;
  populateFirstVm: boolean;
  /** An SNP VM launching beside them on a guest_memfd of its own, for 'populate'. */
  launchingBeside: boolean;
  /**
   * The VM is a default VM (no private memory) on GMEM_ONLY memslots of MMAP | INIT_SHARED
   * guest_memfds, which the VMM maps whole (6.18 on). Absent in every other shape.
   */
  gmemOnly?: true;
}

/**
 * The VMs a schedule runs: the workload's or, for multiVmShare of one-VM schedules, half the time
 * two running VMs on one inode (link, the vCPUs split between them) and half the time the one
 * VM with an SNP VM launching beside it (populate). On `kernel`s with GMEM_ONLY memslots, first
 * gmemOnlyShare of one-VM schedules run a default VM on them instead (its own draw, so that the
 * other shapes fall on the same seeds as on older kernels). The vCPU actors are the same in
 * every shape.
 */
export function scheduleShape(w: ExploreWorkload, seed: number, kernel: KernelVersionName): ScheduleShape {
  const plain = { vms: w.vms, populateFirstVm: w.populateFirstVm, launchingBeside: false };
  if (w.vms !== 1 || w.populateFirstVm) return plain;
  const share = w.gmemOnlyShare ?? 0;
  if (share > 0 && VERSIONS[kernel].gmemOnDefaultVm && new Prng(subSeed(seed, 97)).next() < share) return { ...plain, gmemOnly: true };
  if (w.multiVmShare === 0) return plain;
  const r = new Prng(subSeed(seed, 98)).next();
  if (r >= w.multiVmShare) return plain;
  return r < w.multiVmShare / 2 && w.vcpus > 1 ? { ...plain, vms: 2 } : { ...plain, launchingBeside: true };
}

/** Ops for VMM thread `t` of `threads`: an even split of `total`, the first threads taking the rest. */
export function opsForThread(total: number, threads: number, t: number): number {
  return Math.floor(total / threads) + (t < total % threads ? 1 : 0);
}

/** The vCPU actors of every schedule, `vcpus` per running VM of the workload: the same whatever each seed's shape. */
export function vcpuActors(w: ExploreWorkload): Array<{ vmName: string; index: number }> {
  const running = w.vms - (w.populateFirstVm ? 1 : 0);
  const out: Array<{ vmName: string; index: number }> = [];
  for (let v = 0; v < running; v++) for (let c = 0; c < w.vcpus; c++) out.push({ vmName: `vm${v}`, index: c });
  return out;
}

/** The threads taking part in a schedule: the VMM threads (the leader first) and the vCPU actors. */
export interface ScheduleActors {
  vmmTids: number[];
  runnerTids: number[];
}

/** The layout a schedule builds (workload/layout.ts) for its shape. */
export function scheduleSetup(w: ExploreWorkload, shape: ScheduleShape, seed: number, a: ScheduleActors): StressSetup {
  return {
    vmType: shape.gmemOnly ? 'default' : w.vmType,
    vms: shape.vms,
    pages: w.pages,
    // A default VM has no private memory: every gfn is shared, and faults from its files.
    privateShare: shape.gmemOnly ? 0 : 1,
    ...(shape.gmemOnly ? { gmemFlags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED, hostMap: true } : {}),
    populateFirstVm: shape.populateFirstVm,
    launchingBeside: shape.launchingBeside,
    // Every shape runs the same vCPU actors, split over its running VMs.
    vcpusTotal: a.runnerTids.length,
    vmmThreads: a.vmmTids.length,
    ...(w.layout === 'random' ? { layoutSeed: subSeed(seed, 99) } : {}),
  };
}

/** Each VMM thread's ops in a schedule (index 0 is the leader's): its share of vmmOps, its own seed. */
export function scheduleVmmOps(w: ExploreWorkload, shape: ScheduleShape, seed: number, a: ScheduleActors): VmmOpsConfig[] {
  const signalTids = [...a.vmmTids, ...a.runnerTids];
  return a.vmmTids.map((_, t): VmmOpsConfig => {
    const share = opsForThread(w.vmmOps, a.vmmTids.length, t);
    // maxOps 0 is "no limit" to runVmmOps: a thread with no share gets no ops to draw from.
    return {
      mix: parseMix(share > 0 ? w.ops : ''),
      rate: 0,
      maxPages: 2,
      seed: subSeed(seed, t === 0 ? 0 : 100 + t),
      durationMs: 0,
      maxOps: share,
      signalTids,
      ...(shape.launchingBeside ? { firstOp: 'launch' as const } : {}),
    };
  });
}

/** The share of guest steps that probe the plain memslot (WorkloadConfig.probe). */
export const PLAIN_PROBE_RATIO = 0.05;

/** Each vCPU actor's guest workload in a schedule, over the `gfnStart` its layout put the pages at. */
export function scheduleGuestRuns(
  w: ExploreWorkload,
  shape: ScheduleShape,
  seed: number,
  gfnStart: number,
  actors: number,
  gfnsPerVm: number,
): WorkloadConfig[] {
  // Guests probe the plain memslot the VMM creates and moves, when the mix draws it.
  const probe = (parseMix(w.ops).plainslot ?? 0) > 0 ? { ...plainSlotGfns(gfnsPerVm), ratio: PLAIN_PROBE_RATIO } : undefined;
  return Array.from({ length: actors }, (_, i) => ({
    gfnStart,
    gfnCount: w.pages,
    pattern: 'random' as const,
    writeRatio: w.writeRatio,
    hotRatio: 0.8,
    seed: subSeed(seed, i + 1),
    // One writer per page over every VM: linked VMs share the folios, so a page another
    // VM's vCPU owned could be overwritten under this one's feet.
    writerIndex: i,
    writers: actors,
    durationMs: 0,
    maxAccesses: w.accesses,
    multiVm: shape.vms > 1,
    launchLinked: shape.populateFirstVm,
    prefaultRatio: w.prefaultRatio,
    ...(probe ? { probe } : {}),
  }));
}
