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
import { type Shard, parseShard } from '../io/shard.js';
import { type StressOptions, resolveStressOptions } from '../stress/stress.js';
import {
  MAX_JOBS,
  PARAM_ORDER,
  type ParsedParam,
  SWEEP_DEFAULTS,
  type SweepParamName,
  type SweepParams,
  formatParams,
  parseParam,
  parseSeeds,
} from './params.js';
import { SweepError } from '../io/problems.js';

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
    if (prev !== undefined)
      throw new SweepError(`--param ${raw}: ${p.name} is already given by --param ${prev}; list all its values in one --param`);
    byName.set(p.name, p);
    rawOf.set(p.name, raw);
  }
  const params = PARAM_ORDER.flatMap((n) => (byName.has(n) ? [byName.get(n) as ParsedParam] : []));
  const seeds = parseSeeds(spec.seeds ?? '0');
  let combos: SweepParams[] = [{}];
  for (const p of params) combos = combos.flatMap((c) => p.values.map((v) => ({ ...c, [p.name]: v })));
  const total = combos.length * seeds.length;
  if (total > MAX_JOBS)
    throw new SweepError(`the plan has ${total} jobs (${combos.length} combinations x ${seeds.length} seeds); at most ${MAX_JOBS}`);
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
