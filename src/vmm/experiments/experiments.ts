// One-command experiments: several VMs bound to one guest_memfd on each kernel version, and the
// versions (their prepare policies) side by side on one workload.

import { Rmp } from '../../firmware/rmp.js';
import { Files } from '../../gmem/file.js';
import { Inodes } from '../../gmem/inode.js';
import { Policy, type PolicyName } from '../../gmem/policy.js';
import { type KernelChoice, KERNEL_VERSIONS, type KernelVersionName, VERSIONS } from '../../gmem/version.js';
import { Vms } from '../../kvm/vm.js';
import { PAGE_SIZE } from '../../shm/limits.js';
import { INVARIANTS } from '../../checker/violations.js';
import type { Runtime } from '../sandbox/runtime.js';
import { Sandbox } from '../sandbox/sandbox.js';
import { resolveKernel } from '../sandbox/build.js';
import { ArgumentError } from '../sandbox/errors.js';
import { type StressOptions, type StressProgress, type StressReport, runStress } from '../stress/stress.js';

/** The kernels an experiment runs: one version, 'all', or a list in the order to run them. */
/** Versions to run: one (or `upstream`), a list, or all. */
export type KernelSet = KernelChoice | 'all' | readonly KernelChoice[];

/**
 * The versions an experiment runs: `kernel`, else the versions `policies` are aliases for, else
 * all. Given both, they must name the same versions (resolveKernel's rule for one of each);
 * `policyField` names the policies in the error (the CLI's --policy).
 */
export function experimentKernels(
  o: { kernel?: KernelSet; policies?: readonly PolicyName[] },
  policyField = 'policies',
): KernelVersionName[] {
  const kernels =
    o.kernel === undefined ? undefined : o.kernel === 'all' ? KERNEL_VERSIONS : typeof o.kernel === 'string' ? [o.kernel] : o.kernel;
  const byKernel = kernels?.map((kernel) => resolveKernel({ kernel }));
  const byPolicy = o.policies?.map((policy) => resolveKernel({ policy }));
  if (byKernel !== undefined && byPolicy !== undefined && byKernel.join() !== byPolicy.join()) {
    const quoted = (xs: readonly string[]) => xs.map((x) => `'${x}'`).join(', ');
    const kernel = typeof o.kernel === 'string' ? `'${o.kernel}'` : quoted(byKernel);
    throw new ArgumentError(
      policyField,
      `${quoted(o.policies ?? [])} ${byPolicy.length === 1 ? 'is kernel' : 'are kernels'} ${byPolicy.join(', ')}, which contradicts kernel ${kernel}; give one of them`,
    );
  }
  return byKernel ?? byPolicy ?? [...KERNEL_VERSIONS];
}

export interface MultiVmOptions {
  vms: number;
  /** The kernel versions to run (default: all of them). */
  kernel?: KernelSet;
  /** Prepare policies: aliases for the versions they were modelled on (give this or `kernel`). */
  policies?: PolicyName[];
  durationMs: number;
  seed: number;
  /** Pages every VM maps (all backed by the one inode). */
  pages: number;
  trace?: (kernel: KernelVersionName) => string | undefined;
  /** Stops after the version running when it aborts; the results cover the versions that ran. */
  signal?: AbortSignal;
  onProgress?: (fraction: number, what: string) => void;
}

export interface PageOwners {
  /** Pages of the inode the RMP gives to each VM (index = VM order of creation). */
  byVm: number[];
  /** Per page of the inode: the owning VM, 'shared' (cached, hypervisor-owned) or null (no folio). */
  pages: Array<number | 'shared' | null>;
  /** Cached pages still hypervisor-owned. */
  unassigned: number;
  contested: number;
}

export interface MultiVmResult {
  kernel: KernelVersionName;
  /** The prepare policy of `kernel`. */
  policy: PolicyName;
  faults: number;
  archPrepareCalls: number;
  /** Arch prepare calls a fault made for another bound VM: none since 6dd761d92f66 (6.11). */
  crossVmArchPrepareCalls: number;
  archPreparePerFault: number;
  rmpViolations: number;
  owners: PageOwners;
  /** Index of the VM first in the inode's file list (the newest link). */
  firstInList: number;
  sentence: string;
  run: StressReport;
}

/** Reads who owns each cached page of the shared inode, at the end of a run. */
function pageOwners(rt: Runtime, vmIds: number[], file: number): PageOwners {
  const inodes = new Inodes(rt.mem);
  const files = new Files(rt.mem);
  const vms = new Vms(rt.mem);
  const rmp = new Rmp(rt.mem);
  const ino = files.inode(file);
  const byVm = vmIds.map(() => 0);
  const pages: PageOwners['pages'] = [];
  let unassigned = 0;
  let contested = 0;
  for (let i = 0; i < inodes.sizePages(ino); i++) {
    const pfn = inodes.peek(ino, i);
    if (pfn < 0) {
      pages.push(null);
      continue;
    }
    contested++;
    if (!rmp.assigned(pfn)) {
      unassigned++;
      pages.push('shared');
      continue;
    }
    const v = vmIds.findIndex((id) => vms.asid(id) === rmp.asid(pfn));
    pages.push(v);
    if (v >= 0) byVm[v]++;
  }
  return { byVm, pages, unassigned, contested };
}

/** One version's run within an experiment: its share of the progress, and the experiment's signal. */
function runHooks(
  o: { signal?: AbortSignal; onProgress?: (fraction: number, what: string) => void },
  i: number,
  n: number,
  kernel: KernelVersionName,
): Pick<StressOptions, 'signal' | 'onProgress'> {
  const report = o.onProgress;
  return {
    ...(o.signal ? { signal: o.signal } : {}),
    ...(report
      ? {
          onProgress: (p: StressProgress) =>
            report(
              (i + Math.min(1, p.elapsedMs / p.durationMs)) / n,
              `${kernel} (${i + 1} of ${n}): ${(p.elapsedMs / 1000).toFixed(1)} s, ${p.stats.faults} faults`,
            ),
        }
      : {}),
  };
}

function pct(n: number, of: number): string {
  return of === 0 ? '0%' : `${Math.round((100 * n) / of)}%`;
}

function explainMultiVm(n: number, r: Omit<MultiVmResult, 'sentence' | 'run'>): string {
  const o = r.owners;
  const dist = o.byVm.map((p, i) => `VM ${i}: ${p}`).join(', ');
  const prepare = VERSIONS[r.kernel].prepare;
  if (prepare === Policy.ON_FAULT_OWN_VM) {
    return (
      `Each fault prepared the page for the faulting VM only (${r.archPreparePerFault.toFixed(2)} arch-prepare calls per fault), ` +
      `so the ${o.contested} contested pages went to whichever VM touched them first (${dist}); ` +
      `a VM that then touched a page another VM owns took an RMP violation (${r.rmpViolations} of them).`
    );
  }
  const when = prepare === Policy.ON_ALLOCATE ? 'on every fault' : 'once per folio';
  return (
    `The arch prepare ran ${when} for all ${n} bound VMs in the inode's list order (${r.archPreparePerFault.toFixed(2)} calls per fault, ${r.crossVmArchPrepareCalls} of the ${r.archPrepareCalls} for a VM other than the faulting one); ` +
    `the first VM in that list, VM ${r.firstInList} (the newest link), took ${pct(o.byVm[r.firstInList] ?? 0, o.contested)} of the ${o.contested} contested pages ` +
    `and the others "succeeded" without an RMP change, so a VM's access to the page it faulted itself was an RMP violation (${r.rmpViolations} of them).`
  );
}

export async function multiVmExperiment(o: MultiVmOptions): Promise<MultiVmResult[]> {
  if (!Number.isInteger(o.vms) || o.vms < 2 || o.vms > 8) throw new ArgumentError('vms', `must be an integer from 2 to 8, got ${o.vms}`);
  const kernels = experimentKernels(o);
  const out: MultiVmResult[] = [];
  for (const [i, kernel] of kernels.entries()) {
    if (o.signal?.aborted) break;
    let owners: PageOwners = { byVm: [], pages: [], unassigned: 0, contested: 0 };
    const trace = o.trace?.(kernel);
    const run = await runStress({
      kernel,
      vmType: 'snp',
      vms: o.vms,
      vcpus: 1,
      memory: '64MiB',
      guestMemory: o.pages * PAGE_SIZE,
      durationMs: o.durationMs,
      ops: '',
      opRate: 0,
      writeRatio: 0.2,
      seed: o.seed,
      auditEveryMs: 0,
      ...(trace ? { trace } : {}),
      ...runHooks(o, i, kernels.length, kernel),
      beforeTeardown: (rt, layout) => {
        owners = pageOwners(rt, layout.vms, layout.file);
      },
    });
    const base = {
      kernel,
      policy: run.config.policy,
      faults: run.counters.faults,
      archPrepareCalls: run.counters.archPrepareCalls,
      crossVmArchPrepareCalls: run.counters.archPrepareCallsOtherVm,
      archPreparePerFault: run.counters.faults > 0 ? run.counters.archPrepareCalls / run.counters.faults : 0,
      rmpViolations: run.exits.rmp_violation ?? 0,
      owners,
      firstInList: o.vms - 1,
    };
    out.push({ ...base, sentence: explainMultiVm(o.vms, base), run });
  }
  return out;
}

export interface PolicyRow {
  kernel: KernelVersionName;
  /** The prepare policy of `kernel`. */
  policy: PolicyName;
  faults: number;
  prepares: number;
  archPrepareCalls: number;
  firmwareCommands: number;
  punchHoleLeftovers: number;
  faultsPerSecond: number;
  launchUpdateAfterFallocate: string;
  violations: number;
  run: StressReport;
}

/** SEMANTICS.md section 6's consequence, on a single thread: fallocate, then LAUNCH_UPDATE. */
export async function launchAfterFallocate(kernel: KernelVersionName): Promise<string> {
  const sb = await Sandbox.create({ kernel, memory: '4MiB' });
  try {
    const vm = await sb.createVm({ type: 'snp' });
    const g = await vm.createGuestMemfd({ size: '1MiB' });
    await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: '1MiB', guestMemfd: g });
    await vm.setMemoryAttributes({ address: 0, size: '1MiB', attributes: 'private' });
    await g.fallocate(['keep_size'], 0, '64KiB');
    await vm.snpLaunchStart();
    try {
      await vm.snpLaunchUpdate({ gpa: 0, len: '4KiB', data: new Uint8Array([1]) });
      return 'ok';
    } catch (e) {
      const err = e as { code?: string; populateError?: string };
      return `${err.code ?? 'error'}${err.populateError ? ` (populate: ${err.populateError})` : ''}`;
    }
  } finally {
    await sb.close();
  }
}

export interface PoliciesOptions {
  /** The kernel versions to compare (default: all of them). */
  kernel?: KernelSet;
  durationMs: number;
  seed: number;
  trace?: (kernel: KernelVersionName) => string | undefined;
  signal?: AbortSignal;
  onProgress?: (fraction: number, what: string) => void;
}

export async function policiesExperiment(o: PoliciesOptions): Promise<PolicyRow[]> {
  const kernels = experimentKernels(o);
  const rows: PolicyRow[] = [];
  for (const [i, kernel] of kernels.entries()) {
    if (o.signal?.aborted) break;
    const trace = o.trace?.(kernel);
    const run = await runStress({
      kernel,
      durationMs: o.durationMs,
      seed: o.seed,
      auditEveryMs: 500,
      ...(trace ? { trace } : {}),
      ...runHooks(o, i, kernels.length, kernel),
    });
    rows.push({
      kernel,
      policy: run.config.policy,
      faults: run.counters.faults,
      prepares: run.counters.prepares,
      archPrepareCalls: run.counters.archPrepareCalls,
      firmwareCommands: run.counters.firmwareCommands,
      punchHoleLeftovers: run.findings.punchHoleLeftovers,
      faultsPerSecond: run.faultsPerSecond,
      launchUpdateAfterFallocate: await launchAfterFallocate(kernel),
      violations: INVARIANTS.reduce((s, i) => s + run.violations[i], 0),
      run,
    });
  }
  return rows;
}
