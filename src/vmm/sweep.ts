// Parameter sweeps: a cartesian product of stress settings times a list of seeds, planned as a
// deterministic, numbered job list; run one sandbox per job on a piscina worker pool; streamed
// as one JSON line per job; sharded across machines (`K/N`, 0-based, like a Kubernetes indexed
// Job's JOB_COMPLETION_INDEX); and merged back into a summary per parameter combination.
//
// Job order: parameters in the fixed order of PARAM_ORDER (whatever order the flags came in),
// each parameter's values in the order given, the first parameter varying slowest; seeds
// innermost. Job `index` is the position in that list, so every shard of one campaign agrees on
// it. Shard K of N runs the jobs with index % N === K.

import { createHash } from 'node:crypto';
import { Piscina } from 'piscina';
import { POLICIES } from '../gmem/policy.js';
import { KERNEL_VERSIONS } from '../gmem/version.js';
import { INVARIANTS } from '../vcpu-workers/violations.js';
import { PATTERNS } from '../vcpu-workers/workload.js';
import { workerFile } from './runtime.js';
import { parseMix } from './stress-ops.js';
import { type StressOptions, type StressReport, resolveStressOptions } from './stress.js';
import { parseSize } from './units.js';

export class SweepError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SweepError';
  }
}

/** What every sweep job runs with unless a parameter says otherwise (shorter than `stress`). */
export const SWEEP_DEFAULTS = { durationMs: 1000, auditEveryMs: 500 } as const;

/** The StressOptions fields a sweep can vary, in the order they nest in the job list. */
export const PARAM_ORDER = [
  'kernel',
  'policy',
  'vmType',
  'vms',
  'vcpus',
  'memory',
  'guestMemory',
  'durationMs',
  'ops',
  'opRate',
  'pattern',
  'writeRatio',
  'auditEveryMs',
] as const;
export type SweepParamName = (typeof PARAM_ORDER)[number];
export type ParamValue = string | number;
export type SweepParams = Partial<Record<SweepParamName, ParamValue>>;

const VM_TYPES = ['snp', 'sw-protected'] as const;
const MAX_SEED = 2 ** 32 - 1;
/** Largest plan (jobs) a sweep accepts; a campaign beyond that wants several sweeps. */
export const MAX_JOBS = 1_000_000;

interface ParamSpec {
  name: SweepParamName;
  /** Names accepted on the command line (matched ignoring case, '-' and '_'). */
  aliases: string[];
  /** Separator between alternatives (';' for ops, whose values contain commas). */
  sep: string;
  /** What 'all' expands to, if anything. */
  all?: readonly string[];
  parse(v: string): ParamValue;
  /** The matching `gmem-sandbox stress` flag and how the value is written there. */
  flag: string;
  cli?: (v: ParamValue) => string;
}

function int(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) throw new Error(`must be an integer from ${min} to ${max}`);
    return n;
  };
}
function num(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new Error(`must be a number from ${min} to ${max}`);
    return n;
  };
}
function oneOf(values: readonly string[]) {
  return (v: string): string => {
    if (!values.includes(v)) throw new Error(`must be one of ${values.join(', ')} or all`);
    return v;
  };
}
function size(what: string, pageMultiple: boolean) {
  return (v: string): ParamValue => {
    let n: number;
    try {
      n = parseSize(v, what);
    } catch {
      n = -1;
    }
    if (n <= 0) throw new Error('must be a positive size like 16MiB, 4096 or 0x1000');
    if (pageMultiple && n % 4096 !== 0) throw new Error('must be a multiple of 4KiB');
    return /^\d+$/.test(v.trim()) ? n : v.trim();
  };
}

const SPECS: ParamSpec[] = [
  { name: 'kernel', aliases: ['kernel'], sep: ',', all: KERNEL_VERSIONS, parse: oneOf(KERNEL_VERSIONS), flag: '--kernel' },
  { name: 'policy', aliases: ['policy'], sep: ',', all: POLICIES, parse: oneOf(POLICIES), flag: '--policy' },
  { name: 'vmType', aliases: ['vmType', 'vm-type'], sep: ',', all: VM_TYPES, parse: oneOf(VM_TYPES), flag: '--vm-type' },
  { name: 'vms', aliases: ['vms'], sep: ',', parse: int(1, 8), flag: '--vms' },
  { name: 'vcpus', aliases: ['vcpus'], sep: ',', parse: int(1, 31), flag: '--vcpus' },
  { name: 'memory', aliases: ['memory'], sep: ',', parse: size('memory', false), flag: '--memory' },
  { name: 'guestMemory', aliases: ['guestMemory', 'guest-memory'], sep: ',', parse: size('guest-memory', true), flag: '--guest-memory' },
  { name: 'durationMs', aliases: ['durationMs', 'duration-ms'], sep: ',', parse: int(100, 3_600_000), flag: '--duration', cli: (v) => String(Number(v) / 1000) },
  {
    name: 'ops',
    aliases: ['ops'],
    sep: ';',
    parse: (v) => {
      try {
        if (v.trim() === '') throw new Error('empty');
        parseMix(v);
      } catch (e) {
        throw new Error(`must be an operation mix like punch=3,convert=1 (${(e as Error).message.replace(/^--ops: /, '')})`);
      }
      return v.trim();
    },
    flag: '--ops',
  },
  { name: 'opRate', aliases: ['opRate', 'op-rate'], sep: ',', parse: num(0, 1e9), flag: '--op-rate' },
  { name: 'pattern', aliases: ['pattern'], sep: ',', all: PATTERNS, parse: oneOf(PATTERNS), flag: '--pattern' },
  { name: 'writeRatio', aliases: ['writeRatio', 'write-ratio'], sep: ',', parse: num(0, 1), flag: '--write-ratio' },
  { name: 'auditEveryMs', aliases: ['auditEveryMs', 'audit-every-ms', 'audit-every'], sep: ',', parse: int(0, 3_600_000), flag: '--audit-every' },
];
/** `duration` (seconds) is an alias of durationMs with its own unit. */
const DURATION_SECONDS: ParamSpec = {
  name: 'durationMs',
  aliases: ['duration'],
  sep: ',',
  parse: (v) => Math.round(num(0.1, 3600)(v) * 1000),
  flag: '--duration',
};

const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
const BY_ALIAS = new Map<string, ParamSpec>();
for (const s of [...SPECS, DURATION_SECONDS]) for (const a of s.aliases) BY_ALIAS.set(norm(a), s);

export const PARAM_HELP =
  'vcpus, vms, kernel, policy, vm-type, memory, guest-memory, duration (seconds), duration-ms, ops (alternatives separated by ;), op-rate, pattern, write-ratio, audit-every-ms';

export interface ParsedParam {
  name: SweepParamName;
  values: ParamValue[];
}

/** Parses one `--param name=v1,v2` ('all' expands policy, vm-type and pattern). */
export function parseParam(raw: string): ParsedParam {
  const eq = raw.indexOf('=');
  if (eq <= 0) throw new SweepError(`--param ${raw}: expected name=value[,value...]`);
  const given = raw.slice(0, eq).trim();
  const spec = BY_ALIAS.get(norm(given));
  if (spec === undefined) {
    const hint = norm(given) === 'seed' || norm(given) === 'seeds' ? ' (use --seeds)' : '';
    throw new SweepError(`--param ${raw}: unknown parameter '${given}'${hint}; known: ${PARAM_HELP}`);
  }
  const parts = raw.slice(eq + 1).split(spec.sep).map((p) => p.trim());
  const values: ParamValue[] = [];
  for (const p of parts) {
    if (p === '') throw new SweepError(`--param ${raw}: ${given} has an empty value (values are separated by '${spec.sep}')`);
    if (p === 'all') {
      if (spec.all === undefined) throw new SweepError(`--param ${raw}: 'all' is only accepted for kernel, policy, vm-type and pattern`);
      values.push(...spec.all);
      continue;
    }
    let v: ParamValue;
    try {
      v = spec.parse(p);
    } catch (e) {
      throw new SweepError(`--param ${raw}: ${given} ${(e as Error).message}, got '${p}'`);
    }
    values.push(v);
  }
  const seen = new Set<string>();
  for (const v of values) {
    if (seen.has(String(v))) throw new SweepError(`--param ${raw}: ${given} value '${v}' is listed twice`);
    seen.add(String(v));
  }
  return { name: spec.name, values };
}

/** Parses `--seeds`: `A..B` (inclusive), a comma list, or a mix (`0..9,100`). */
export function parseSeeds(raw: string | number[]): number[] {
  const seeds: number[] = [];
  const bad = (what: string) => new SweepError(`--seeds ${raw}: ${what}`);
  const check = (s: string): number => {
    if (!/^\d+$/.test(s) || Number(s) > MAX_SEED) throw bad(`'${s}' is not a seed (an integer from 0 to ${MAX_SEED}) or a range A..B`);
    return Number(s);
  };
  if (Array.isArray(raw)) {
    for (const s of raw) seeds.push(check(String(s)));
  } else {
    const items = raw.split(',').map((s) => s.trim());
    for (const item of items) {
      if (item === '') throw bad('empty item');
      const m = /^(.*?)\.\.(.*)$/.exec(item);
      if (m === null) {
        seeds.push(check(item));
        continue;
      }
      const a = check(m[1].trim());
      const b = check(m[2].trim());
      if (b < a) throw bad(`range end ${b} is below its start ${a}`);
      if (b - a + 1 > MAX_JOBS) throw bad(`range ${item} has more than ${MAX_JOBS} seeds`);
      for (let s = a; s <= b; s++) seeds.push(s);
    }
  }
  if (seeds.length === 0) throw bad('no seeds');
  const seen = new Set<number>();
  for (const s of seeds) {
    if (seen.has(s)) throw bad(`seed ${s} is listed twice`);
    seen.add(s);
  }
  return seeds;
}

export interface Shard {
  /** 0-based shard number, 0 <= k < n. */
  k: number;
  n: number;
}

/** Parses `K/N`: 0-based K (0 <= K < N), like a Kubernetes indexed Job's JOB_COMPLETION_INDEX. */
export function parseShard(raw: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(raw);
  if (m === null) throw new SweepError(`--shard ${raw}: expected K/N with integers, K 0-based (0 <= K < N)`);
  const k = Number(m[1]);
  const n = Number(m[2]);
  if (n < 1) throw new SweepError(`--shard ${raw}: N must be at least 1`);
  if (k >= n) throw new SweepError(`--shard ${raw}: K is 0-based and must be from 0 to ${n - 1} (shards are 0/${n} .. ${n - 1}/${n}, like JOB_COMPLETION_INDEX)`);
  return { k, n };
}

export interface SweepJob {
  index: number;
  seed: number;
  /** The swept parameters (one value each); defaults are not repeated here. */
  params: SweepParams;
}

export interface SweepPlan {
  /** Fingerprint of the parameters, seeds and defaults: every shard of one campaign shares it. */
  id: string;
  params: ParsedParam[];
  seeds: number[];
  /** Jobs in the whole campaign (all shards). */
  total: number;
  /** The jobs this plan runs: all of them, or one shard's. */
  jobs: SweepJob[];
  shard: Shard | null;
}

export interface SweepSpec {
  /** `name=v1,v2` strings, as given to --param (repeatable). */
  params?: string[];
  /** `A..B`, a comma list, or an array; default: seed 0 only. */
  seeds?: string | number[];
  /** `K/N` (0-based K) or a parsed shard. */
  shard?: string | Shard;
}

/** Plans a sweep: the cartesian product of parameters times seeds, then one shard of it. */
export function planSweep(spec: SweepSpec): SweepPlan {
  const byName = new Map<SweepParamName, ParsedParam>();
  const rawOf = new Map<SweepParamName, string>();
  for (const raw of spec.params ?? []) {
    const p = parseParam(raw);
    const prev = rawOf.get(p.name);
    if (prev !== undefined) throw new SweepError(`--param ${raw}: ${p.name} is already given by --param ${prev}; list all its values in one --param`);
    byName.set(p.name, p);
    rawOf.set(p.name, raw);
  }
  const params = PARAM_ORDER.flatMap((n) => (byName.has(n) ? [byName.get(n) as ParsedParam] : []));
  const seeds = parseSeeds(spec.seeds ?? '0');
  let combos: SweepParams[] = [{}];
  for (const p of params) combos = combos.flatMap((c) => p.values.map((v) => ({ ...c, [p.name]: v })));
  const total = combos.length * seeds.length;
  if (total > MAX_JOBS) throw new SweepError(`the plan has ${total} jobs (${combos.length} combinations x ${seeds.length} seeds); at most ${MAX_JOBS}`);
  // Every combination must make a valid stress run, before any job starts.
  for (const c of combos) {
    try {
      resolveStressOptions(jobOptions(c, 0));
    } catch (e) {
      throw new SweepError(`combination ${formatParams(c) || '(defaults)'}: ${(e as Error).message}`);
    }
  }
  const jobs: SweepJob[] = [];
  for (const c of combos) for (const seed of seeds) jobs.push({ index: jobs.length, seed, params: c });
  const id = createHash('sha256')
    .update(JSON.stringify({ params: params.map((p) => [p.name, p.values]), seeds, defaults: SWEEP_DEFAULTS }))
    .digest('hex')
    .slice(0, 12);
  const plan: SweepPlan = { id, params, seeds, total, jobs, shard: null };
  return spec.shard === undefined ? plan : shardPlan(plan, typeof spec.shard === 'string' ? parseShard(spec.shard) : spec.shard);
}

/** The jobs of shard K of N: index % N === K (round-robin, so every shard gets a spread). */
export function shardPlan(plan: SweepPlan, shard: Shard): SweepPlan {
  if (!Number.isInteger(shard.k) || !Number.isInteger(shard.n) || shard.n < 1 || shard.k < 0 || shard.k >= shard.n) {
    throw new SweepError(`shard ${shard.k}/${shard.n}: K must be from 0 to N-1`);
  }
  return { ...plan, jobs: plan.jobs.filter((j) => j.index % shard.n === shard.k), shard };
}

/** The StressOptions a job runs with: sweep defaults, then its parameters, then its seed. */
export function jobOptions(params: SweepParams, seed: number): Omit<StressOptions, 'onProgress'> {
  return { ...SWEEP_DEFAULTS, ...(params as Omit<StressOptions, 'onProgress'>), seed };
}

export function formatParams(p: SweepParams): string {
  return PARAM_ORDER.filter((n) => p[n] !== undefined)
    .map((n) => `${n}=${p[n]}`)
    .join(' ');
}

/** The `gmem-sandbox stress` command that reruns one job on its own. */
export function rerunCommand(params: SweepParams, seed: number): string {
  const o = { ...SWEEP_DEFAULTS, ...params } as SweepParams;
  const q = (s: string) => (/^[\w.,=:/+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  const parts = ['gmem-sandbox', 'stress', '--seed', String(seed)];
  for (const n of PARAM_ORDER) {
    const v = o[n];
    if (v === undefined) continue;
    const spec = SPECS.find((s) => s.name === n) as ParamSpec;
    parts.push(spec.flag, q(spec.cli ? spec.cli(v) : String(v)));
  }
  return parts.join(' ');
}

// ---------------------------------------------------------------------------------------------
// Running

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

export interface RunSweepOptions {
  /** Jobs running at once (pool threads); default 1, since each job runs several threads itself. */
  concurrency?: number;
  /** Called with each job's line as soon as it finishes (completion order). */
  onLine?: (line: SweepLine) => void;
  /** Write each job's Chrome trace to this file name with the job index inserted (t.json -> t.7.json). */
  trace?: string;
  /** Stops the sweep: no job starts, running jobs' threads are terminated, and they get no line. */
  signal?: AbortSignal;
}

/** The trace file of job `index` for a sweep's --trace FILE. */
export function jobTraceFile(file: string, index: number): string {
  return file.replace(/(\.[^./]+)?$/, `.${index}$1`);
}

/** Runs the plan's jobs on a piscina pool, one sandbox per job; resolves with the lines in completion order. */
export async function runSweep(plan: SweepPlan, opts: RunSweepOptions = {}): Promise<SweepLine[]> {
  const concurrency = opts.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new SweepError(`--jobs: must be a positive integer, got ${concurrency}`);
  const threads = Math.max(1, Math.min(concurrency, plan.jobs.length));
  const pool = new Piscina<SweepTask, SweepLine>({
    filename: workerFile('vmm/sweep-worker.js'),
    minThreads: threads,
    maxThreads: threads,
    // Between tasks the pool's workers wait with Atomics.waitAsync, keeping their event loop free.
    atomics: 'async',
    idleTimeout: 1000,
  });
  const lines: SweepLine[] = [];
  const signal = opts.signal;
  try {
    await Promise.all(
      plan.jobs.map(async (j) => {
        const task: SweepTask = { plan: plan.id, total: plan.total, index: j.index, seed: j.seed, params: j.params, ...(opts.trace ? { trace: jobTraceFile(opts.trace, j.index) } : {}) };
        const t0 = performance.now();
        let line: SweepLine;
        try {
          if (signal?.aborted) return;
          // Aborting a running task terminates its pool thread, and with it the job's own workers.
          line = await pool.run(task, signal ? { signal } : {});
        } catch (e) {
          // An interrupted job has no line: it did not finish, and `--resume` runs it again.
          if (signal?.aborted) return;
          line = failedLine(task, e, performance.now() - t0);
        }
        lines.push(line);
        opts.onLine?.(line);
      }),
    );
  } finally {
    await pool.destroy();
  }
  return lines;
}

export { type ComboSummary, type InputLine, type SweepFailure, type SweepSummary, SweepMerger, inputLines, isOk, mergeLines } from './sweep-merge.js';
