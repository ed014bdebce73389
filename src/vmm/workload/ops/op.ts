// What a VMM op is to the loop that draws it (vmm-ops.ts): a handler that issues its ioctls on
// the range the loop drew, drawing any further random numbers of its own from the loop's Prng.
// The table of handlers is table.ts; adding an op is one handler and one entry there.

import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, gmemFallocate } from '../../../gmem/fallocate.js';
import { PAGE_SIZE } from '../../../shm/limits.js';
import type { Prng } from '../../../shm/prng.js';
import type { RunControl } from '../../../vcpu-workers/runctl.js';
import type { Sandbox } from '../../sandbox/sandbox.js';
import type { HostMap, StressRegion, StressTarget } from '../layout.js';

/** What every op of one VMM thread's run shares. */
export interface OpContext {
  sb: Sandbox;
  rc: RunControl;
  t: StressTarget;
  /** The run's one Prng: a handler's draws come after the loop's, in a fixed order, so a seed replays. */
  rng: Prng;
  /** Thread ids a 'signal' may target. */
  signalTids: readonly number[];
  /** Set by 'oom': the allocator holds pages back until the loop gives them back before the next op. */
  starved: boolean;
  /** The host mappings this thread made by 'mmap' (it unmaps only its own). */
  maps: HostMap[];
  /** What this thread last wrote through a mapping, per file page (ops/host.ts): the tag's generation and the discard epoch then. */
  hostWrites: Map<number, { gen: number; epoch: number }>;
  /** The GUP pins this thread's 'pin' ops hold (gup.ts handles), released by a later 'pin' or at the end. */
  pins: number[];
}

/**
 * The range an op works on: a memslot's `region`, and `len` pages at `gfn` in the guest and at
 * `index` in the file at `fd`. A wide draw moves one of the two out of the region (see
 * OpHandler.range).
 */
export interface OpRange {
  region: StressRegion;
  fd: number;
  gfn: number;
  index: number;
  len: number;
}

export interface OpHandler {
  /**
   * What a wide draw spreads (one op in three): 'file', a range of file indices anywhere in the
   * file (over two memslots' bindings, indices no memslot binds, a page past the end); 'gfn', a
   * gfn range across the memslots (up to a page past the last).
   */
  range: 'file' | 'gfn';
  /** Issues the op: its errno (0 or negative) to count, or null when it did nothing (not counted). */
  run(c: OpContext, r: OpRange): number | null;
}

/** fallocate(PUNCH_HOLE | KEEP_SIZE) of `len` pages at `index` of the file at `fd`. */
export function punchFd(sb: Sandbox, fd: number, index: number, len: number): number {
  return sb.withGmemFd(fd, (f) =>
    f < 0 ? f : gmemFallocate(sb.k.g, f, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, index * PAGE_SIZE, len * PAGE_SIZE),
  );
}

/** fallocate(KEEP_SIZE) of `len` pages at `index` of the file at `fd`. */
export function allocateFd(sb: Sandbox, fd: number, index: number, len: number): number {
  return sb.withGmemFd(fd, (f) => (f < 0 ? f : gmemFallocate(sb.k.g, f, FALLOC_FL_KEEP_SIZE, index * PAGE_SIZE, len * PAGE_SIZE)));
}
