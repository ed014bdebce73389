// A stress campaign: vCPU workers run guest workloads while the VMM worker punches, allocates,
// converts and pre-faults; the auditor checks every invariant at quiescent points and at the
// end; the report counts faults, retries, prepares, firmware calls, exits, leftovers and
// violations per invariant, with the seed that reproduces the run.

import { POLICY_NAMES_BY_ID, type PolicyName } from '../../gmem/policy.js';
import { type KernelChoice, VERSIONS } from '../../gmem/version.js';
import {
  MAX_BUFFER_BYTES,
  type SandboxOptions,
  resolveKernel,
  resolveLimits,
  resolveModuleParams,
  resolvePatches,
} from '../sandbox/build.js';
import type { ModuleParams } from '../../gmem/params.js';
import type { VmTypeName } from '../../kvm/vm.js';
import { LIMITS, PAGE_SIZE } from '../../shm/limits.js';
import { LOCK_STAT_NAMES, type StatsSnapshot, sumLatency } from '../../shm/stats.js';
import { bugMask } from '../../gmem/bugs.js';
import { INVARIANTS, type Invariant } from '../../checker/violations.js';
import type { Pattern, WorkloadResult } from '../../vcpu-workers/guest-workload.js';
import { type AuditReport, auditQuiescent, auditTeardown, mergeAudit } from '../../checker/audit.js';
import { takeLockOrderReports } from '../../checker/online.js';
import { ArgumentError } from '../sandbox/errors.js';
import { parseSize } from '../sandbox/units.js';
import { type CrashReport, Runtime } from '../sandbox/runtime.js';
import { parseMix } from '../workload/mix.js';
import type { VmmOpsResult } from '../workload/vmm-ops.js';
import { STRESS_WORKLOAD_DEFAULTS, stressGuestRun, stressOps, stressSetup, stressVmmOps } from '../workload/stress.js';

export interface StressOptions {
  /** The modelled kernel (default 6.11); `policy` is the older name of the same choice. */
  kernel?: KernelChoice;
  policy?: PolicyName;
  /** Posted patches applied on top of the kernel version (gmem/version.ts KERNEL_PATCHES). */
  patches?: readonly string[];
  /** kvm.ko's module parameters (`modprobe kvm NAME=...`), as the kernel version has them. */
  moduleParams?: ModuleParams;
  vmType?: VmTypeName;
  vcpus?: number;
  vms?: number;
  memory?: string | number;
  /** Guest memory each VM maps and the workload touches (default: a quarter of `memory`). */
  guestMemory?: string | number;
  durationMs?: number;
  ops?: string;
  opRate?: number;
  pattern?: Pattern;
  writeRatio?: number;
  seed?: number;
  /** Audit at a quiescent point this often (0: only at the end). */
  auditEveryMs?: number;
  watchdogMs?: number;
  /** Write a Chrome trace of the run to this file. */
  trace?: string;
  /** Planted bugs to enable (gmem/bugs.ts): a stress run that must fail. */
  bugs?: string[];
  onProgress?: (p: StressProgress) => void;
  /** Set-up of the shared memory (seconds for gigabytes): fraction done and what is being done. */
  onSetupProgress?: (fraction: number, what: string) => void;
  /** Ends the run early: the workers stop, the report covers what ran and says `interrupted`. */
  signal?: AbortSignal;
  /** Called at the end, while every worker is idle and before teardown: for experiments. */
  beforeTeardown?: (rt: Runtime, layout: { vms: number[]; file: number }) => void;
}

export interface StressProgress {
  elapsedMs: number;
  durationMs: number;
  stats: StatsSnapshot;
  violations: number;
}

export interface StressReport {
  seed: number;
  config: StressConfig;
  elapsedMs: number;
  counters: Record<string, number>;
  vmmOps: VmmOpsResult['ops'];
  vmmErrors: Record<string, number>;
  guestAccesses: number;
  exits: Record<string, number>;
  violations: Record<Invariant, number>;
  violationDetails: AuditReport['violations'];
  findings: { punchHoleLeftovers: number; crossVmPrepare: number };
  crashes: CrashReport[];
  faultsPerSecond: number;
  /** Faults per second in each sampling interval. */
  throughput: Array<{ tMs: number; faultsPerSecond: number }>;
  faultLatency: Array<{ lowNs: number; highNs: number; count: number }>;
  lockWaits: Array<{ lock: string; waitMs: number; contended: number }>;
  /** The run was stopped early (SIGINT, SIGTERM): the counts cover only what ran. */
  interrupted: boolean;
  ok: boolean;
}

export type StressConfig = Required<Omit<StressOptions, 'onProgress' | 'onSetupProgress' | 'signal' | 'beforeTeardown' | 'trace'>>;

/**
 * What a stress run can really use. Every VM also gives the VMM one vCPU (its KVM_PRE_FAULT_MEMORY
 * handle); vCPU ids per VM, vCPU slots and thread ids are the sandbox's fixed tables (controller,
 * VMM and firmware take 3 thread ids).
 */
export const STRESS_LIMITS = {
  vcpusPerVm: LIMITS.MAX_VCPUS_PER_VM - 1,
  vms: LIMITS.MAX_VMS,
  vcpuSlots: LIMITS.MAX_THREADS,
  vcpuThreads: LIMITS.MAX_THREADS - 3,
} as const;

const REPORTED_COUNTERS = [
  'faults',
  'faultRetries',
  'memoryFaultExits',
  'prepares',
  'clears',
  'archPrepareCalls',
  'archPrepareCallsOtherVm',
  'archInvalidateCalls',
  'rmpUpdates',
  'rmpUpdateRetries',
  'firmwareCommands',
  'foliosAllocated',
  'foliosFreed',
  'fallocates',
  'punchHoles',
  'conversions',
  'conversionsRefused',
  'lruDrains',
  'gupPins',
  'preFaultedPages',
  'sptesInstalled',
  'sptesZapped',
  'pvalidates',
  'vcExceptions',
  'rmpViolations',
  'guestReads',
  'guestWrites',
  'hostAccesses',
  'hostFaults',
  'hostSigbus',
  'hostPtesZapped',
] as const;

export function resolveStressOptions(o: StressOptions): StressConfig {
  const memory = o.memory ?? '64MiB';
  const memBytes = parseSize(memory, 'memory');
  if (memBytes <= 0 || memBytes % PAGE_SIZE !== 0)
    throw new ArgumentError('memory', `must be a positive multiple of 4KiB, got ${memBytes}`);
  const guest = o.guestMemory ?? Math.min(memBytes / 4, 16 << 20);
  const kernel = resolveKernel(o);
  const cfg = {
    kernel,
    policy: POLICY_NAMES_BY_ID[VERSIONS[kernel].prepare],
    patches: resolvePatches(o.patches),
    moduleParams: resolveModuleParams(o.moduleParams, kernel),
    vmType: o.vmType ?? 'snp',
    vcpus: o.vcpus ?? 2,
    vms: o.vms ?? 1,
    memory,
    guestMemory: guest,
    durationMs: o.durationMs ?? 5000,
    ops: stressOps(o.ops, o.bugs ?? []),
    opRate: o.opRate ?? STRESS_WORKLOAD_DEFAULTS.opRate,
    pattern: o.pattern ?? STRESS_WORKLOAD_DEFAULTS.pattern,
    writeRatio: o.writeRatio ?? STRESS_WORKLOAD_DEFAULTS.writeRatio,
    bugs: o.bugs ?? [],
    seed: o.seed ?? Date.now() % 1_000_000,
    auditEveryMs: o.auditEveryMs ?? 1000,
    watchdogMs: o.watchdogMs ?? 5000,
  } as StressConfig;
  const L = STRESS_LIMITS;
  const checks: Array<[boolean, string, string]> = [
    [
      Number.isInteger(cfg.vcpus) && cfg.vcpus >= 1 && cfg.vcpus <= L.vcpusPerVm,
      'vcpus',
      `must be an integer from 1 to ${L.vcpusPerVm} (a VM has ${LIMITS.MAX_VCPUS_PER_VM} vCPU ids and the VMM uses one to pre-fault), got ${cfg.vcpus}`,
    ],
    [
      Number.isInteger(cfg.vms) && cfg.vms >= 1 && cfg.vms + launching(cfg) <= L.vms,
      'vms',
      `must be an integer from 1 to ${L.vms - launching(cfg)}${launching(cfg) ? ' (the populate op adds an SNP VM launching beside them)' : ''}, got ${cfg.vms}`,
    ],
    [
      cfg.vms * cfg.vcpus <= L.vcpuThreads,
      'vcpus',
      `vms x vcpus must be at most ${L.vcpuThreads} vCPU threads (${LIMITS.MAX_THREADS} threads less the controller, VMM and firmware), got ${cfg.vms} x ${cfg.vcpus}`,
    ],
    [
      cfg.vms * (cfg.vcpus + 1) + launching(cfg) <= L.vcpuSlots,
      'vcpus',
      `vms x (vcpus + 1) must be at most ${L.vcpuSlots} vCPU slots (each VM also gives the VMM a vCPU), got ${cfg.vms} x ${cfg.vcpus + 1}`,
    ],
    [cfg.durationMs > 0, 'duration', `must be positive, got ${cfg.durationMs} ms`],
    [cfg.writeRatio >= 0 && cfg.writeRatio <= 1, 'write-ratio', `must be between 0 and 1, got ${cfg.writeRatio}`],
    [cfg.opRate >= 0, 'op-rate', `must be >= 0, got ${cfg.opRate}`],
    [
      ['snp', 'sw-protected'].includes(cfg.vmType) || (cfg.vmType === 'default' && VERSIONS[kernel].gmemOnDefaultVm),
      'vm-type',
      `must be snp or sw-protected${VERSIONS[kernel].gmemOnDefaultVm ? ', or default' : ' (default needs GMEM_ONLY memslots: 6.18 on)'}, got ${cfg.vmType}`,
    ],
  ];
  for (const [ok, field, rule] of checks) if (!ok) throw new ArgumentError(field, rule);
  const gb = parseSize(guest, 'guest-memory');
  if (gb % PAGE_SIZE !== 0 || gb <= 0 || gb > memBytes)
    throw new ArgumentError('guest-memory', `must be a positive multiple of 4KiB no larger than memory (${memBytes}), got ${gb}`);
  // The VMM backs each VM's shared memory with its own stretch of one buffer (see runStress).
  if (gb * cfg.vms > MAX_BUFFER_BYTES)
    throw new ArgumentError(
      'guest-memory',
      `guest-memory x VMs must be at most ${MAX_BUFFER_BYTES / (1 << 30)} GiB, got ${gb} x ${cfg.vms}`,
    );
  bugMask(cfg.bugs);
  // The sandbox's own limits (4 GiB of host memory, ...): a sweep checks every combination at
  // planning with this, instead of finding out in the job.
  resolveLimits(stressSandbox(cfg, gb / PAGE_SIZE));
  return cfg;
}

export async function runStress(o: StressOptions = {}): Promise<StressReport> {
  const cfg = resolveStressOptions(o);
  const pages = parseSize(cfg.guestMemory, 'guest-memory') / PAGE_SIZE;
  const rt = await startRuntime(cfg, pages, o);
  const t0 = performance.now();
  const st: StressState = { interrupted: false, throughput: [], audit: null, results: [], vmm: null, runStart: t0 };
  const stop = (): void => {
    st.interrupted = true;
    rt.requestStop();
  };
  o.signal?.addEventListener('abort', stop, { once: true });
  // An abort while the workers were starting has already fired.
  if (o.signal?.aborted) stop();
  try {
    await runWorkload(rt, cfg, pages, o, st);
  } catch (e) {
    if (rt.crashes.length === 0)
      rt.crashes.push({
        actor: 'controller',
        kind: 'error',
        message: (e as Error).message,
        ...((e as Error).stack ? { stack: (e as Error).stack } : {}),
      });
  } finally {
    o.signal?.removeEventListener('abort', stop);
    await rt.shutdown(st.interrupted ? 200 : undefined);
  }
  return stressReport(rt, cfg, st, performance.now() - t0);
}

/** What a stress run gathers while it runs, for its report. */
interface StressState {
  /** Stopped early by the caller's signal. */
  interrupted: boolean;
  throughput: StressReport['throughput'];
  audit: AuditReport | null;
  results: WorkloadResult[];
  vmm: VmmOpsResult | null;
  /** When the workers started (throughput is sampled from then). */
  runStart: number;
}

/** 1 when the run has an SNP VM launching beside its VMs (the populate op's target), else 0. */
function launching(cfg: StressConfig): number {
  return parseMix(cfg.ops).populate > 0 ? 1 : 0;
}

/** The sandbox a stress run builds: resolved at planning too, so that its limits are checked before any job starts. */
function stressSandbox(cfg: StressConfig, pages: number): SandboxOptions {
  // Each VM's shared memory gets its own stretch of VMM memory, so VMs do not alias it.
  return {
    kernel: cfg.kernel,
    patches: cfg.patches,
    moduleParams: cfg.moduleParams,
    memory: cfg.memory,
    userMemory: Math.max(16 << 20, pages * PAGE_SIZE * (cfg.vms + launching(cfg))),
    watchdogMs: cfg.watchdogMs,
    maxVms: Math.max(4, cfg.vms + launching(cfg)),
  };
}

function startRuntime(cfg: StressConfig, pages: number, o: StressOptions): Promise<Runtime> {
  return Runtime.start({
    sandbox: stressSandbox(cfg, pages),
    callTimeoutMs: cfg.durationMs + 30_000,
    trace: o.trace !== undefined,
    traceEvents: traceRingFor(cfg),
    bugs: bugMask(cfg.bugs),
    ...(o.onSetupProgress ? { onSetupProgress: o.onSetupProgress } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  });
}

/** The layout, the vCPU workers, the workload (workload/stress.ts) until it ends, then the final audits. */
async function runWorkload(rt: Runtime, cfg: StressConfig, pages: number, o: StressOptions, st: StressState): Promise<void> {
  const layout = await rt.call(rt.vmm, () => rt.vmm.api.setupStress(stressSetup(cfg, pages)));
  for (let v = 0; v < cfg.vms; v++) for (let c = 0; c < cfg.vcpus && !st.interrupted; c++) await rt.addVcpu(`vm${v}`, layout.vms[v], c);
  const runs = rt.vcpus.map((a, i) => rt.call(a, () => a.api.run(stressGuestRun(cfg, pages, i, rt.vcpus.length))));
  const vmmRun = rt.call(rt.vmm, () =>
    rt.vmm.api.runOps(
      stressVmmOps(
        cfg,
        [rt.vmm, ...rt.vcpus].map((a) => a.tid),
      ),
    ),
  );
  const all = Promise.all([Promise.all(runs), vmmRun]);
  await sampleUntilDone(rt, cfg, o, st, all);
  const [r, vr] = await all;
  st.results.push(...r);
  st.vmm = vr;
  st.audit = merged(st.audit, auditQuiescent(rt.mem));
  o.beforeTeardown?.(rt, layout);
  if (o.trace !== undefined) rt.writeTrace(o.trace, `gmem-sandbox stress (seed ${cfg.seed})`);
  // An interrupted run has a second at most: the teardown audit (and the round trips it needs)
  // is left out of its partial result.
  if (!st.interrupted) {
    await rt.call(rt.vmm, () => rt.vmm.api.closeAll());
    for (const a of rt.vcpus) await rt.call(a, () => a.api.release());
    st.audit = merged(st.audit, auditTeardown(rt.mem));
  }
}

/** Samples throughput, audits at quiescent points and reports progress until the workers are done (or one crashed). */
async function sampleUntilDone(rt: Runtime, cfg: StressConfig, o: StressOptions, st: StressState, all: Promise<unknown>): Promise<void> {
  const loops = rt.vcpus.length + 1;
  let settled = false;
  const done = all.finally(() => {
    settled = true;
  });
  done.catch(() => undefined);
  const tick = Math.max(50, Math.min(250, cfg.auditEveryMs > 0 ? cfg.auditEveryMs : 250));
  // Throughput is sampled from when the workers start, not from before the set-up.
  st.runStart = performance.now();
  let lastAudit = 0;
  let lastT = 0;
  let lastFaults = 0;
  while (!settled) {
    await Promise.race([done, sleep(tick)]);
    const elapsed = performance.now() - st.runStart;
    const faults = rt.stats().faults;
    if (elapsed > lastT)
      st.throughput.push({ tMs: Math.round(elapsed), faultsPerSecond: ((faults - lastFaults) * 1000) / (elapsed - lastT) });
    lastT = elapsed;
    lastFaults = faults;
    if (settled || rt.crashes.length > 0) break;
    if (cfg.auditEveryMs > 0 && !st.interrupted && elapsed - lastAudit >= cfg.auditEveryMs && elapsed < cfg.durationMs - 300) {
      lastAudit = elapsed;
      await rt.quiesce(loops);
      st.audit = merged(st.audit, auditQuiescent(rt.mem));
      rt.resume();
    }
    o.onProgress?.({ elapsedMs: elapsed, durationMs: cfg.durationMs, stats: rt.stats(), violations: totalViolations(st.audit) });
  }
}

function merged(a: AuditReport | null, b: AuditReport): AuditReport {
  return a === null ? b : mergeAudit(a, b);
}

/** The report of a run that ended (or crashed, or was stopped), from what it gathered and the final stats. */
function stressReport(rt: Runtime, cfg: StressConfig, st: StressState, elapsedMs: number): StressReport {
  const { audit, results, interrupted } = st;
  const stats = rt.stats();
  const counts = Object.fromEntries(INVARIANTS.map((i) => [i, audit?.counts[i] ?? 0])) as Record<Invariant, number>;
  // Lockdep's inversions of the whole run: the workers are gone, the graph is in shared memory.
  const lockOrder = takeLockOrderReports(rt.mem);
  counts.lockOrder += lockOrder.length;
  const exits: Record<string, number> = {};
  for (const r of results) {
    for (const [k, n] of Object.entries(r.exits)) exits[k] = (exits[k] ?? 0) + n;
    for (const v of r.violations) {
      counts[v.invariant]++;
    }
  }
  for (const c of rt.crashes) if (c.kind === 'timeout' || /watchdog/.test(c.message)) counts.liveness++;
  const details = [...lockOrder, ...results.flatMap((r) => r.violations), ...(audit?.violations ?? [])].slice(0, 50);
  const ok = INVARIANTS.every((i) => counts[i] === 0) && rt.crashes.length === 0;
  return {
    seed: cfg.seed,
    config: cfg,
    elapsedMs,
    counters: Object.fromEntries(REPORTED_COUNTERS.map((k) => [k, stats[k]])),
    vmmOps: st.vmm?.ops ?? parseMix(''),
    vmmErrors: st.vmm?.errors ?? {},
    guestAccesses: results.reduce((a, r) => a + r.accesses, 0),
    exits,
    violations: counts,
    violationDetails: details,
    findings: {
      punchHoleLeftovers: stats.punchHoleLeftovers,
      crossVmPrepare: Math.max(audit?.findings.crossVmPrepare ?? 0, stats['finding.crossVmPrepare']),
    },
    crashes: rt.crashes,
    faultsPerSecond: stats.faults / ((interrupted ? Math.max(1, performance.now() - st.runStart) : cfg.durationMs) / 1000),
    throughput: st.throughput,
    faultLatency: sumLatency(rt.mem),
    lockWaits: LOCK_STAT_NAMES.map((l) => ({ lock: l, waitMs: stats[`lockWaitNs.${l}`] / 1e6, contended: stats[`lockContended.${l}`] })),
    interrupted,
    ok: ok && !interrupted,
  };
}

/**
 * Trace events each thread has room for. The busiest thread, the firmware, records about 7,500
 * events a second on this 2-core machine (a vCPU about 3,000): twice that over the run, so that a
 * default 5 s run drops none. Every one of the 64 thread slots gets a ring (32 bytes an event), so
 * the size is capped and a long traced run reports what it dropped.
 */
export function traceRingFor(cfg: { durationMs: number }): number {
  return Math.min(1 << 17, Math.max(1 << 16, Math.ceil((cfg.durationMs / 1000 + 1) * 16_000)));
}

function totalViolations(a: AuditReport | null): number {
  return a === null ? 0 : INVARIANTS.reduce((s, i) => s + a.counts[i], 0);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
