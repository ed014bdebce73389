// Shared plumbing of the benchmark groups: the run context, tinybench wrappers that report
// nanoseconds per operation, a timed loop into a Histogram, and small helpers.

import { Bench } from 'tinybench';
import { Histogram } from './histogram.js';

export interface Ctx {
  quick: boolean;
  /** ceiling.fill.2threads / ceiling.fill.1thread of this run, once the machine group ran. */
  fillScaling?: number;
  /** Progress to stderr (never mixed into --json output). */
  log(msg: string): void;
}

export interface Sampled {
  /** Median time of one operation, ns. */
  median: number;
  p50: number;
  p99: number;
  /** Number of samples (calls, or batches when batch > 1). */
  samples: number;
}

export interface TinyOpts {
  /** Operations per call of fn: samples are divided by it (fn must run exactly `batch` ops). */
  batch?: number;
  timeMs: number;
  warmupMs: number;
  /** At least this many samples (default 16). */
  iterations?: number;
  /** Untimed, before each sampled call (e.g. wait for a peer to fall asleep). */
  beforeEach?: () => void;
}

function sampled(b: Bench, name: string, batch: number): Sampled {
  const r = b.getTask(name)?.result;
  if (r === undefined) throw new Error(`${name}: no result`);
  if (r.error) throw r.error;
  const l = r.latency;
  const toNs = (ms: number | undefined): number => ((ms ?? NaN) * 1e6) / batch;
  return { median: toNs(l.p50), p50: toNs(l.p50), p99: toNs(l.p99), samples: l.samples.length };
}

function bench(o: TinyOpts): Bench {
  return new Bench({
    time: o.timeMs,
    warmupTime: o.warmupMs,
    warmupIterations: 4,
    iterations: o.iterations ?? 16,
    throws: true,
  });
}

/** Runs a synchronous task under tinybench; returns ns per operation. */
export function tinySync(name: string, fn: () => void, o: TinyOpts): Sampled {
  const b = bench(o);
  b.add(name, fn, o.beforeEach ? { beforeEach: o.beforeEach } : {});
  b.runSync();
  return sampled(b, name, o.batch ?? 1);
}

/** Same for an async task (each call is awaited before the next). */
export async function tinyAsync(name: string, fn: () => Promise<unknown>, o: TinyOpts): Promise<Sampled> {
  const b = bench(o);
  b.add(name, fn);
  await b.run();
  return sampled(b, name, o.batch ?? 1);
}

/** Times `n` calls of fn(i) one by one (after `warmup` untimed calls) into a histogram. */
export function timedLoop(n: number, warmup: number, fn: (i: number) => void): Histogram {
  for (let i = 0; i < warmup; i++) fn(i);
  const h = new Histogram();
  for (let i = warmup; i < warmup + n; i++) {
    const t0 = process.hrtime.bigint();
    fn(i);
    h.record(Number(process.hrtime.bigint() - t0));
  }
  return h;
}

/** One row of an alternation (alternateBlocks): its histogram, its operation, what goes around a block. */
export interface BlockArm {
  /** Receives one sample per `batch` calls of op: their mean time, ns. */
  h: Histogram;
  /** One operation; `i` counts this arm's calls from 0 over all its blocks. */
  op: (i: number) => void;
  /** Untimed, before each of this arm's blocks; `i` is the first call the block will make. */
  enter?: (i: number) => void | Promise<void>;
  /** Untimed, after each of this arm's blocks. */
  leave?: () => void | Promise<void>;
}

export interface BlockPlan {
  /** Blocks recorded, per arm. */
  blocks: number;
  /** Samples recorded per arm and block. */
  perBlock: number;
  /** Samples not recorded at the start of each block: the switch from the other arm. */
  skip: number;
  /** Calls of op per sample (default 1). */
  batch?: number;
  /** Blocks run first and not recorded (default 0). */
  warmBlocks?: number;
  /** Block k starts with arm k mod arms (default false: the first arm always opens a block). */
  rotate?: boolean;
}

/**
 * Samples rows in alternating blocks, so that each is compared with its neighbour in time: on this
 * VM, how fast a cache line crosses CPUs, or whether a wake-up is quick, moves by several times
 * over seconds, and a row measured after another inherits the state the first left.
 */
export async function alternateBlocks(plan: BlockPlan, arms: readonly BlockArm[]): Promise<void> {
  const batch = plan.batch ?? 1;
  const warm = plan.warmBlocks ?? 0;
  const calls = arms.map(() => 0);
  for (let k = 0; k < warm + plan.blocks; k++) {
    for (let a = 0; a < arms.length; a++) {
      const x = plan.rotate ? (a + k) % arms.length : a;
      const arm = arms[x];
      await arm.enter?.(calls[x]);
      for (let j = 0; j < plan.skip + plan.perBlock; j++) {
        const i = calls[x];
        const t0 = process.hrtime.bigint();
        for (let b = 0; b < batch; b++) arm.op(i + b);
        const ns = Number(process.hrtime.bigint() - t0);
        calls[x] = i + batch;
        if (k >= warm && j >= plan.skip) arm.h.record(ns / batch);
      }
      await arm.leave?.();
    }
  }
}

export function histSampled(h: Histogram): Sampled {
  return { median: h.quantile(0.5), p50: h.quantile(0.5), p99: h.quantile(0.99), samples: h.count };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Sleeps the calling thread (the controller may: nothing else runs on it meanwhile). */
const napWord = new Int32Array(new SharedArrayBuffer(4));
export function napMs(ms: number): void {
  Atomics.wait(napWord, 0, 0, ms);
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Something the optimiser cannot prove unused. */
export let sink = 0;
export function consume(v: number): void {
  sink = (sink + v) | 0;
}
