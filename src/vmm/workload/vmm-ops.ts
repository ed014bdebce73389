// The workload of a stress or explore run. A run builds a layout (layout.ts: VMs, guest_memfds,
// memslots, the vCPUs), then runs it on real threads: every vCPU worker runs the guest side of
// the workload (src/vcpu-workers/guest-workload.ts: reads, writes, PVALIDATE and pre-faults,
// each page owned by one writer so data loss shows), while each VMM thread runs this file's loop:
// ops drawn from a weighted mix (mix.ts; one handler per op, ops/table.ts) at a given rate,
// racing the vCPUs' faults. What each tool runs, and with which seeds, is said in one place per
// tool: explore.ts for the explorer's schedules, stress.ts for a stress run.

import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../../gmem/flags.js';
import { Coverage } from '../../shm/coverage.js';
import { Prng } from '../../shm/prng.js';
import { TraceKind, type Tracer } from '../../shm/trace.js';
import { errnoName } from '../../shm/errno.js';
import type { RunControl } from '../../vcpu-workers/runctl.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { StressTarget } from './layout.js';
import { VMM_OPS, type VmmOp, zeroOps } from './mix.js';
import type { OpContext, OpHandler, OpRange } from './ops/op.js';
import { unpinAll } from './ops/inplace.js';
import { VMM_OP_HANDLERS } from './ops/table.js';

export interface VmmOpsConfig {
  /** Relative weights; an op with weight 0 never runs. */
  mix: Partial<Record<VmmOp, number>>;
  /** Operations per second (0: as fast as possible). */
  rate: number;
  /** Largest range one op touches, in pages. */
  maxPages: number;
  seed: number;
  durationMs: number;
  maxOps: number;
  /** Thread ids of the vCPU threads a 'signal' op may target (none: the op does nothing). */
  signalTids?: number[];
  /** The op this thread runs first, before any is drawn (if the layout can run it). */
  firstOp?: VmmOp;
}

export interface VmmOpsResult {
  ops: Record<VmmOp, number>;
  errors: Record<string, number>;
  elapsedMs: number;
}

/**
 * One VMM thread's ops until its time, its count or a stop: each op drawn from the mix, then
 * its range, then whatever the op draws itself, all from one Prng, so that a seed replays.
 */
export function runVmmOps(sb: Sandbox, rc: RunControl, t: StressTarget, cfg: VmmOpsConfig): VmmOpsResult {
  const k = sb.k;
  const c: OpContext = {
    sb,
    rc,
    t,
    rng: new Prng(cfg.seed),
    signalTids: cfg.signalTids ?? [],
    starved: false,
    maps: [],
    hostWrites: new Map(),
    pins: [],
  };
  const weights = opWeights(t, cfg.mix, k.g.inPlace);
  const cov = new Coverage(sb.mem);
  const total = weights.reduce((a, b) => a + b, 0);
  const res: VmmOpsResult = { ops: zeroOps(), errors: {}, elapsedMs: 0 };
  const t0 = performance.now();
  const deadline = cfg.durationMs > 0 ? t0 + cfg.durationMs : Infinity;
  const gap = cfg.rate > 0 ? 1000 / cfg.rate : 0;
  // A mix with no op to draw (all weights 0) leaves a timed run's VMM idle, still parking at
  // the quiescent points the auditor waits for; an untimed one (explore) has nothing to do.
  if (total === 0) {
    idle(k.sync, rc, deadline);
    res.elapsedMs = performance.now() - t0;
    return res;
  }
  try {
    for (let n = 0; total > 0; n++) {
      if (rc.stopRequested() || k.sync.aborted() || performance.now() > deadline) break;
      if (cfg.maxOps > 0 && n >= cfg.maxOps) break;
      rc.checkpoint(k.sync);
      // An 'oom' lasts until this thread's next op.
      endStarvation(c);
      // The launching VM's first ops run whenever its populate may be drawn.
      const first = n === 0 && t.populateVm >= 0 && (cfg.mix.populate ?? 0) > 0 ? cfg.firstOp : undefined;
      const op = first ?? drawOp(c.rng, weights, total);
      const start = k.tracer.on ? k.tracer.now() : 0;
      const h: OpHandler = VMM_OP_HANDLERS[op];
      const range = drawRange(c, h.range, cfg.maxPages);
      cov.opBegin(k.sync.tid, VMM_OPS.indexOf(op));
      let e: number | null;
      try {
        e = h.run(c, range);
      } finally {
        cov.opEnd(k.sync.tid);
      }
      if (e !== null) count(res, k.tracer, op, e, start);
      if (gap > 0) k.sync.sleepMs(gap);
    }
  } finally {
    endStarvation(c);
    unpinAll(c);
  }
  res.elapsedMs = performance.now() - t0;
  return res;
}

/** How long an idle VMM sleeps between two looks at the run control. */
const IDLE_MS = 5;

/** A VMM thread with nothing to draw: it waits for the end of the run at its checkpoints. */
function idle(sync: Sandbox['k']['sync'], rc: RunControl, deadline: number): void {
  if (deadline === Infinity) return;
  while (!rc.stopRequested() && !sync.aborted() && performance.now() < deadline) {
    rc.checkpoint(sync);
    sync.sleepMs(IDLE_MS);
  }
}

/** The ops on host mappings (6.18): drawn only where the layout's files may be mapped. */
const HOST_OPS: readonly VmmOp[] = ['mmap', 'touch', 'munmap'];

/** The ops of in-place conversion (7.4 with gmem_in_place_conversion on): drawn only there. */
const IN_PLACE_OPS: readonly VmmOp[] = ['convert2', 'pin'];

/** Each op's weight in VMM_OPS order: an op the layout cannot run is not drawn. */
function opWeights(t: StressTarget, mix: VmmOpsConfig['mix'], inPlace: boolean): number[] {
  // populate, launch and vcpu need a launching VM, close a VM of its own, the host ops files made with MMAP,
  // convert private memory (INIT_SHARED files are made on VMs without: default VMs) in the VM's
  // attributes, which gmem_in_place_conversion turns off (convert2 converts in the file instead).
  const mappable = (t.gmemFlags & GUEST_MEMFD_FLAG_MMAP) !== 0;
  const privateMem = (t.gmemFlags & GUEST_MEMFD_FLAG_INIT_SHARED) === 0;
  const runnable = (o: VmmOp): boolean =>
    ((o !== 'populate' && o !== 'launch' && o !== 'vcpu') || t.populateVm >= 0) &&
    (o !== 'close' || !t.linked) &&
    (o !== 'convert' || (privateMem && !inPlace)) &&
    (mappable || !HOST_OPS.includes(o)) &&
    ((inPlace && privateMem && mappable) || !IN_PLACE_OPS.includes(o));
  // Beside a launching VM, populate is the op that VM is there for: drawn four times as often.
  return VMM_OPS.map((o) => (runnable(o) ? Math.max(0, mix[o] ?? 0) * (o === 'populate' ? 4 : 1) : 0));
}

function drawOp(rng: Prng, weights: readonly number[], total: number): VmmOp {
  let pick = rng.next() * total;
  for (let i = 0; i < VMM_OPS.length; i++) {
    if (pick < weights[i]) return VMM_OPS[i];
    pick -= weights[i];
  }
  return 'punch';
}

/**
 * A range inside one memslot: `gfn` in the guest, `index` in the file behind it. One op in three
 * goes wide instead: a file range anywhere in the file (across two memslots' bindings, over
 * indices no memslot binds, up to a page past the end), or a gfn range across memslots (up to a
 * page past the last).
 */
function drawRange(c: OpContext, spread: OpHandler['range'], maxPages: number): OpRange {
  const { t, rng } = c;
  const region = t.regions[rng.below(t.regions.length)];
  let len = 1 + rng.below(Math.min(maxPages, region.npages));
  const at = rng.below(region.npages - len + 1);
  let gfn = region.gfn + at;
  let index = region.pgoff + at;
  if (rng.below(3) === 0) {
    const fileOp = spread === 'file';
    const first = fileOp ? 0 : t.regions[0].gfn;
    const span = fileOp ? region.filePages : t.pages;
    const start = rng.below(span);
    len = 1 + rng.below(Math.min(2 * maxPages, span - start + 1));
    if (fileOp) index = start;
    else gfn = first + start;
  }
  return { region, fd: region.fd, gfn, index, len };
}

/** Counts an op that ran, and its error by errno name; traced as an ioctl from `start`. */
function count(res: VmmOpsResult, tracer: Tracer, op: VmmOp, e: number, start: number): void {
  if (tracer.on) tracer.record(TraceKind.IOCTL, VMM_OPS.indexOf(op), start);
  res.ops[op]++;
  if (e < 0) {
    const key = `${op}:${errnoName(e)}`;
    res.errors[key] = (res.errors[key] ?? 0) + 1;
  }
}

/** Gives back the pages an 'oom' held back. */
function endStarvation(c: OpContext): void {
  if (!c.starved) return;
  c.sb.reserveHostPages(0);
  c.starved = false;
}
