// One job's outcome as a line of sweep output: what the pool's worker receives and returns.

import { INVARIANTS } from '../../checker/violations.js';
import type { StressReport } from '../stress/stress.js';
import type { SweepParams } from './params.js';

/** What the pool's worker receives for one job. */
export interface SweepTask {
  plan: string;
  total: number;
  index: number;
  seed: number;
  params: SweepParams;
  /** Where this job writes its Chrome trace (sweep --trace). */
  trace?: string;
}

/** Counters a sweep line keeps (the stress report has more). */
export const LINE_COUNTERS = [
  'faults',
  'faultRetries',
  'memoryFaultExits',
  'prepares',
  'rmpUpdates',
  'punchHoles',
  'conversions',
  'preFaultedPages',
  'guestReads',
  'guestWrites',
] as const;

/** One job's outcome: one JSON line of sweep output. */
export interface SweepLine {
  plan: string;
  /** Jobs in the whole campaign, so merge can tell a missing shard. */
  total: number;
  index: number;
  seed: number;
  params: SweepParams;
  ok: boolean;
  faultsPerSecond: number;
  violations: Record<string, number>;
  findings: { punchHoleLeftovers: number; crossVmPrepare: number };
  counters: Record<string, number>;
  elapsedMs: number;
  crashes: number;
  /** The first crash or error, if any. */
  error?: string;
}

/** The fields that name a job in its line. */
function jobFields(t: SweepTask): Pick<SweepLine, 'plan' | 'total' | 'index' | 'seed' | 'params'> {
  return { plan: t.plan, total: t.total, index: t.index, seed: t.seed, params: t.params };
}

export function lineFromReport(t: SweepTask, r: StressReport): SweepLine {
  const c = r.crashes[0];
  return {
    ...jobFields(t),
    ok: r.ok,
    faultsPerSecond: Math.round(r.faultsPerSecond * 10) / 10,
    violations: { ...r.violations },
    findings: { ...r.findings },
    counters: Object.fromEntries(LINE_COUNTERS.map((k) => [k, r.counters[k] ?? 0])),
    elapsedMs: Math.round(r.elapsedMs),
    crashes: r.crashes.length,
    ...(c ? { error: `${c.actor} ${c.kind}: ${c.message}` } : {}),
  };
}

/** The line for a job whose worker failed before producing a report. */
export function failedLine(t: SweepTask, e: unknown, elapsedMs: number): SweepLine {
  return {
    ...jobFields(t),
    ok: false,
    faultsPerSecond: 0,
    violations: Object.fromEntries(INVARIANTS.map((i) => [i, 0])),
    findings: { punchHoleLeftovers: 0, crossVmPrepare: 0 },
    counters: Object.fromEntries(LINE_COUNTERS.map((k) => [k, 0])),
    elapsedMs: Math.round(elapsedMs),
    crashes: 1,
    error: `sweep worker: ${e instanceof Error ? e.message : String(e)}`,
  };
}
