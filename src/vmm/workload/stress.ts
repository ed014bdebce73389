// What a stress run runs: the layout (every VM binds one guest_memfd, three quarters of it
// private), each vCPU's free-running guest workload over all of it, and the VMM's ops at a rate,
// all for the run's duration and from the run's one seed. stress/stress.ts only runs it.

import type { BugName } from '../../gmem/bugs.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../../gmem/flags.js';
import type { VmTypeName } from '../../kvm/vm.js';
import { subSeed } from '../../shm/prng.js';
import type { Pattern, WorkloadConfig } from '../../vcpu-workers/guest-workload.js';
import type { StressSetup } from './layout.js';
import { parseMix } from './mix.js';
import type { VmmOpsConfig } from './vmm-ops.js';

/** What the workload reads of a stress run's configuration (stress/stress.ts resolves and checks it). */
export interface StressWorkload {
  vmType: VmTypeName;
  vms: number;
  ops: string;
  opRate: number;
  pattern: Pattern;
  writeRatio: number;
  seed: number;
  durationMs: number;
}

/** A stress run's workload when its options leave it out. */
export const STRESS_WORKLOAD_DEFAULTS = {
  ops: 'punch=3,fallocate=1,convert=2,prefault=1,mmap=1,touch=4,munmap=1,convert2=2,pin=2',
  opRate: 2000,
  pattern: 'random',
  writeRatio: 0.3,
} as const satisfies Partial<StressWorkload>;

/**
 * The op mix a stress run hunting a planted bug uses when no --ops is given: the default mix
 * plus the op that reaches the bug's code (a memslot update for a missing synchronize_srcu, a
 * memslot update and an SEV command for kvm->lock taken inside slots_lock). Measured with scripts/stress-detection.mjs.
 */
export const STRESS_BUG_OPS: Readonly<Partial<Record<BugName, string>>> = {
  'memslot-update-skips-synchronize-srcu': `${STRESS_WORKLOAD_DEFAULTS.ops},memslot=1`,
  'memslot-update-takes-kvm-lock': `${STRESS_WORKLOAD_DEFAULTS.ops},memslot=1,populate=1`,
};

/** The op mix of a run: the one given, else the planted bugs' own, else the default. */
export function stressOps(given: string | undefined, bugs: readonly string[]): string {
  if (given !== undefined) return given;
  const own = bugs.map((b) => STRESS_BUG_OPS[b as BugName]).find((m) => m !== undefined);
  return own ?? STRESS_WORKLOAD_DEFAULTS.ops;
}

/**
 * The layout: `pages` guest pages per VM, gfn i at index i; with the populate op, an SNP VM
 * launching beside them on a guest_memfd of its own (as explore's launching shape), whose
 * LAUNCH_UPDATEs race the punches, fallocates and memslot changes made to its file, and whose
 * launch the op may end and pre-fault. Default VMs (6.18 on) have no private memory: their
 * memslots are GMEM_ONLY, on MMAP | INIT_SHARED guest_memfds the VMM maps whole for the host ops.
 */
export function stressSetup(w: StressWorkload, pages: number): StressSetup {
  const launchingBeside = parseMix(w.ops).populate > 0;
  if (w.vmType === 'default')
    return {
      vmType: w.vmType,
      vms: w.vms,
      pages,
      privateShare: 0,
      launchingBeside,
      gmemFlags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
      hostMap: true,
    };
  return { vmType: w.vmType, vms: w.vms, pages, privateShare: 0.75, launchingBeside };
}

/** vCPU `i`'s guest workload (of `writers`, over every VM) for the run's duration. */
export function stressGuestRun(w: StressWorkload, pages: number, i: number, writers: number): WorkloadConfig {
  return {
    gfnStart: 0,
    gfnCount: pages,
    pattern: w.pattern,
    writeRatio: w.writeRatio,
    hotRatio: 0.8,
    seed: subSeed(w.seed, i + 1),
    // One writer per page over every VM: VMs bound to one inode share its folios.
    writerIndex: i,
    writers,
    durationMs: w.durationMs,
    maxAccesses: 0,
    multiVm: w.vms > 1,
  };
}

/** The VMM thread's ops: the mix at the run's rate, a signal for any of `signalTids`. */
export function stressVmmOps(w: StressWorkload, signalTids: number[]): VmmOpsConfig {
  return {
    mix: parseMix(w.ops),
    rate: w.opRate,
    maxPages: 16,
    seed: subSeed(w.seed, 0),
    durationMs: w.durationMs,
    maxOps: 0,
    signalTids,
  };
}
