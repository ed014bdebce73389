// Wall-clock tracing for free-mode runs: each thread appends events (faults, ioctls, lock waits,
// firmware commands) to its own ring in shared memory, off unless a run asks for a trace; the
// controller turns them into Chrome trace events. Owns the 'trace' region.

import { LayoutBuilder, type Mem, regionBase } from './layout.js';

export const TraceKind = { FAULT: 0, IOCTL: 1, LOCK_WAIT: 2, FIRMWARE: 3, GUEST_EXIT: 4 } as const;
export const TRACE_KIND_NAMES = ['fault', 'ioctl', 'lock wait', 'firmware command', 'guest exit'] as const;

const EV = 4; // Float64 slots: start (ms since the epoch), duration (ms), kind, arg
const HEADER = 8; // Float64 slots per thread: [count, dropped]

const REGION = 'trace';

/** Declares `perThread` events of room for every thread (0: tracing impossible, no memory). */
export function declareTrace(lb: LayoutBuilder, maxThreads: number, perThread: number): void {
  lb.add(REGION, 2 * (1 + maxThreads * (HEADER + perThread * EV)), 'shm/trace.ts');
}

export interface TraceEvent {
  tid: number;
  startMs: number;
  durMs: number;
  kind: number;
  arg: number;
}

/** One thread's writer. `on` is read once: turning tracing on is done before the threads start. */
export class Tracer {
  readonly on: boolean;
  private readonly f: Float64Array;
  private readonly base: number;
  private readonly cap: number;
  private readonly origin = performance.timeOrigin;

  constructor(mem: Mem, tid: number) {
    this.f = mem.f64;
    const root = regionBase(mem, REGION) / 2;
    const words = mem.layout.regions[REGION].words / 2;
    this.cap = Math.floor((Math.floor((words - 1) / mem.limits.maxThreads) - HEADER) / EV);
    this.base = root + 1 + tid * (HEADER + this.cap * EV);
    this.on = this.cap >= 1 && this.f[root] !== 0;
  }

  /** Wall-clock milliseconds, comparable across threads. */
  now(): number {
    return this.origin + performance.now();
  }

  record(kind: number, arg: number, startMs: number, endMs = this.now()): void {
    const n = this.f[this.base];
    if (n >= this.cap) {
      // A full ring keeps its oldest events; the count lets the trace say it is incomplete.
      this.f[this.base + 1]++;
      return;
    }
    const e = this.base + HEADER + n * EV;
    this.f[e] = startMs;
    this.f[e + 1] = endMs - startMs;
    this.f[e + 2] = kind;
    this.f[e + 3] = arg;
    this.f[this.base] = n + 1;
  }
}

/** Turns tracing on for threads that build their Tracer afterwards. */
export function enableTracing(mem: Mem): boolean {
  const words = mem.layout.regions[REGION].words;
  if (words <= 2 * (1 + mem.limits.maxThreads * HEADER)) return false;
  mem.f64[regionBase(mem, REGION) / 2] = 1;
  return true;
}

/** Events each thread could not record because its ring was full, by thread id (only non-zero). */
export function traceDropped(mem: Mem): Map<number, number> {
  const root = regionBase(mem, REGION) / 2;
  const words = mem.layout.regions[REGION].words / 2;
  const cap = Math.floor((Math.floor((words - 1) / mem.limits.maxThreads) - HEADER) / EV);
  const out = new Map<number, number>();
  if (cap < 1) return out;
  for (let t = 0; t < mem.limits.maxThreads; t++) {
    const n = mem.f64[root + 1 + t * (HEADER + cap * EV) + 1];
    if (n > 0) out.set(t, n);
  }
  return out;
}

/** Every thread's events, oldest first per thread. */
export function collectTrace(mem: Mem): TraceEvent[] {
  const root = regionBase(mem, REGION) / 2;
  const words = mem.layout.regions[REGION].words / 2;
  const cap = Math.floor((Math.floor((words - 1) / mem.limits.maxThreads) - HEADER) / EV);
  const out: TraceEvent[] = [];
  if (cap < 1) return out;
  for (let t = 0; t < mem.limits.maxThreads; t++) {
    const b = root + 1 + t * (HEADER + cap * EV);
    const n = mem.f64[b];
    for (let i = 0; i < n; i++) {
      const e = b + HEADER + i * EV;
      out.push({ tid: t, startMs: mem.f64[e], durMs: mem.f64[e + 1], kind: mem.f64[e + 2], arg: mem.f64[e + 3] });
    }
  }
  return out;
}
