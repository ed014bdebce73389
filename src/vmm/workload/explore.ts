// The explorer's workload: what one schedule runs (VMs, pages, vCPU accesses, the VMM's op mix)
// and the shape each seed gives it. Shared by the controller (explore.ts) and the VMM thread that
// leads the schedules (explore/round.ts).

import type { VmTypeName } from '../../kvm/vm.js';
import { Prng, subSeed } from '../../shm/prng.js';

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
}

export const DEFAULT_WORKLOAD: ExploreWorkload = {
  vmType: 'snp',
  vms: 1,
  pages: 4,
  vcpus: 2,
  accesses: 8,
  writeRatio: 0.5,
  ops: 'punch=3,convert=1,fallocate=1,prefault=1,populate=1,memslot=1,memflags=1,plainslot=1,badbind=1,close=1,hwpoison=1,fwfail=1,oom=1,signal=1',
  vmmOps: 4,
  populateFirstVm: false,
  prefaultRatio: 0.15,
  layout: 'random',
  vmmThreads: 2,
  multiVmShare: 0.25,
};

/** The most VMM threads a controlled workload runs. */
export const MAX_VMM_THREADS = 4;

export interface ScheduleShape {
  /** Running VMs (with populateFirstVm, VM 0 of them launches instead), bound to one inode by link when several. */
  vms: number;
  populateFirstVm: boolean;
  /** An SNP VM launching beside them on a guest_memfd of its own, for 'populate'. */
  launchingBeside: boolean;
}

/**
 * The VMs a schedule runs: the workload's or, for multiVmShare of one-VM schedules, half the time
 * two running VMs on one inode (link, the vCPUs split between them) and half the time the one
 * VM with an SNP VM launching beside it (populate). The vCPU actors are the same in every shape.
 */
export function scheduleShape(w: ExploreWorkload, seed: number): ScheduleShape {
  const plain = { vms: w.vms, populateFirstVm: w.populateFirstVm, launchingBeside: false };
  if (w.vms !== 1 || w.populateFirstVm || w.multiVmShare === 0) return plain;
  const r = new Prng(subSeed(seed, 98)).next();
  if (r >= w.multiVmShare) return plain;
  return r < w.multiVmShare / 2 && w.vcpus > 1 ? { ...plain, vms: 2 } : { ...plain, launchingBeside: true };
}

/** Ops for VMM thread `t` of `threads`: an even split of `total`, the first threads taking the rest. */
export function opsForThread(total: number, threads: number, t: number): number {
  return Math.floor(total / threads) + (t < total % threads ? 1 : 0);
}
