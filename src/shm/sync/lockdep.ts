// Lockdep for the model, as kernel/locking/lockdep.c does it for the kernel.
//
// Why: a deadlock shows only in the one interleaving that closes it, and then as a hang. Lockdep
// reports the lock order instead, the first time both orders have been taken, in any run that
// took them, deadlocked or not. Like the kernel's, it works on lock classes (every VM's
// slots_lock is one class, sync/classes.ts), not on lock instances: each thread keeps a stack of
// the locks it holds (task->held_locks: the lock word, its class, how it was taken; thread-local
// here, per sandbox and thread id), and the first time a thread takes class B while holding class
// A, the dependency A -> B goes into a graph of classes in shared memory (this module's region),
// with the code site that made it (a stack trace, taken only then: never on the hot path). A new
// dependency that closes a cycle is an inversion, reported with every dependency of the cycle
// and its code site; takeLockdepReports hands the reports to the checker (invariant 'lockOrder').
//
// What it checks, and the rules that keep it free of false reports:
// - a mutex, a write acquisition and a read acquisition of an rwsem or rwlock_t all wait for
//   their holders: writer-fair, a reader waits behind a waiting writer, so a read acquisition
//   depends on what its thread holds as much as a write one (lockdep's non-recursive reads);
// - a trylock never waits: it depends on nothing, but what is taken under it depends on it;
// - an SRCU read section never waits for anyone, so it depends on nothing (srcu_read_lock is a
//   recursive read), but it is held: X taken inside it gives srcu -> X; synchronize_srcu waits
//   for every reader, so under X it gives X -> srcu, as lockdep's lock_sync() does;
// - the graph keeps whether a class was read-held or read-taken only in the report's text: with
//   writer-fair rwsems every path of such dependencies can deadlock (given a waiting writer);
// - a class the kernel's lockdep has no map for (the folio lock, a page-flag bit) is held and
//   asserted, but orders nothing: an ABBA through it is the kernel's to find by deadlocking;
// - two locks of one class nested (two folios, two VMs' locks) make no dependency: as lockdep
//   with a subclass or nest_lock annotation, the order within a class is not checked;
// - lockdep_assert_held: whether this thread holds a lock, checked against both its held stack
//   and the lock word (Sync.assertHeld, in both sync modes).
// What it cannot see: waits that are not locks (a completion, a TLB flush waiting for a vCPU's
// acknowledgement, a mailbox reply, a fault retrying until a memslot generation moves, the RMP's
// busy bit), so a cycle through one of those is found by the scheduler's deadlock check or the
// watchdog instead; and inversions among locks of one class.
//
// The region: a header (the graph's own lock, counts), the class-pair matrix (0, or the
// dependency's record + 1), the first reports, then (kept across a sandbox reset, which bumps the
// epoch instead) the epoch and the dependency records with their text. A reset empties the graph:
// each schedule of the explorer is a run of its own, as each boot is for the kernel.

import { LayoutBuilder, type Mem, regionBase } from '../layout.js';
import { assert } from '../limits.js';
import { CLASS_LOCKDEP, LOCK_CLASSES, NR_LOCK_CLASSES } from './classes.js';
import type { WordDescriber } from './sync.js';

/** How a held lock was taken (what task->held_locks records of it, and what kind of lock it is). */
export const Held = { MUTEX: 0, WRITE: 1, READ: 2, SRCU_READ: 3 } as const;
export type HeldMode = (typeof Held)[keyof typeof Held];
const MODE_NAMES = ['mutex', 'write', 'read', 'SRCU read section'] as const;

/** MAX_LOCK_DEPTH: locks one thread may hold at once. */
export const MAX_LOCK_DEPTH = 48;
/** Bytes of text per dependency: who took what while holding what, and where. */
const EDGE_TEXT_BYTES = 1536;
/** Stack frames kept per code site, from the caller of the sync layer outwards. */
const SITE_FRAMES = 10;
/** Inversions kept in full; further ones are counted. */
const REPORT_KEEP = 4;

const N = NR_LOCK_CLASSES;
/** At most one dependency per ordered pair of distinct classes. */
const MAX_EDGES = N * (N - 1);
const H_GRAPH_LOCK = 0;
const H_EDGES = 1;
const H_REPORTS = 2;
const HEADER = 16;
const MATRIX = HEADER;
/** A report: the cycle's length, then its dependencies (the new one first). */
const REPORT_WORDS = 1 + N;
const REPORTS = MATRIX + N * N;
const RESET_WORDS = REPORTS + REPORT_KEEP * REPORT_WORDS;
const EPOCH = RESET_WORDS;
const RECORDS = EPOCH + 16;
const R_FROM = 0;
const R_TO = 1;
const R_TID = 2;
const R_LEN = 3;
const R_TEXT = 4;
const REC_WORDS = R_TEXT + EDGE_TEXT_BYTES / 4;
const WORDS = RECORDS + MAX_EDGES * REC_WORDS;

const REGION = 'lockdep';

export function declareLockdep(lb: LayoutBuilder): void {
  lb.add(REGION, WORDS, 'shm/sync/lockdep.ts', RESET_WORDS);
}

/** A sandbox reset empties the graph: the threads' held stacks and caches follow the new epoch. */
export function lockdepReset(mem: Mem): void {
  const base = regionBase(mem, REGION);
  mem.w.fill(0, base, base + RESET_WORDS);
  Atomics.add(mem.w, base + EPOCH, 1);
}

/**
 * task->held_locks, packed for the hot path: [depth, epoch, then per lock its word and
 * (class | mode << 8)]. Per thread, with one byte per class pair that is set once this thread
 * found the dependency in the graph.
 */
interface HeldLocks {
  readonly stack: Int32Array;
  readonly seen: Uint8Array;
}
const S_DEPTH = 0;
const S_EPOCH = 1;
const S_LOCKS = 2;
const CLS_MASK = 0xff;
const MODE_SHIFT = 8;

/** Thread-local, as module state is per worker: per sandbox, per thread id of this JS thread. */
const HELD = new WeakMap<SharedArrayBuffer, Map<number, HeldLocks>>();

function heldLocksOf(mem: Mem, tid: number): HeldLocks {
  let m = HELD.get(mem.buffers.meta);
  if (m === undefined) HELD.set(mem.buffers.meta, (m = new Map()));
  let h = m.get(tid);
  if (h === undefined) {
    h = { stack: new Int32Array(S_LOCKS + 2 * MAX_LOCK_DEPTH), seen: new Uint8Array(N * N) };
    h.stack[S_EPOCH] = -1;
    m.set(tid, h);
  }
  return h;
}

/** A broken lock rule of the model itself (never a user error): names the lock and its holder. */
export class LockdepError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LockdepError';
  }
}

/** One thread's lockdep: its held stack, and its way into the shared class graph. */
export class Lockdep {
  private readonly stack: Int32Array;
  private readonly seen: Uint8Array;
  private readonly w: Int32Array;
  private readonly base: number;
  private readonly epochWord: number;

  constructor(
    private readonly mem: Mem,
    readonly tid: number,
    private readonly describe: WordDescriber,
  ) {
    const h = heldLocksOf(mem, tid);
    this.stack = h.stack;
    this.seen = h.seen;
    this.w = mem.w;
    this.base = regionBase(mem, REGION);
    this.epochWord = this.base + EPOCH;
  }

  // lock_acquire, before any wait: the order against every held lock, then the lock is held.
  acquire(i: number, cls: number, mode: HeldMode): void {
    const s = this.stack;
    if (this.w[this.epochWord] !== s[S_EPOCH]) this.newEpoch();
    const n = s[S_DEPTH];
    // An SRCU read section waits for nobody: nothing it is taken under can be part of a deadlock.
    if (n !== 0 && mode !== Held.SRCU_READ) this.dependencies(n, i, cls, mode);
    this.push(n, i, cls, mode);
  }

  /** A trylock that succeeded: held, but it never waited, so it depends on nothing held. */
  acquireTry(i: number, cls: number): void {
    if (this.w[this.epochWord] !== this.stack[S_EPOCH]) this.newEpoch();
    this.push(this.stack[S_DEPTH], i, cls, Held.MUTEX);
  }

  // lock_sync: synchronize_srcu waits for every reader as a writer of the class would, and holds nothing after.
  sync(i: number, cls: number): void {
    if (this.w[this.epochWord] !== this.stack[S_EPOCH]) this.newEpoch();
    this.dependencies(this.stack[S_DEPTH], i, cls, Held.WRITE);
  }

  // lock_release: most often of the lock taken last.
  release(i: number): void {
    const s = this.stack;
    const n = s[S_DEPTH] - 1;
    if (n >= 0 && s[S_LOCKS + 2 * n] === i) s[S_DEPTH] = n;
    else this.releaseNested(i, n);
  }

  /** Unlocks come in any order: the topmost entry of the word goes. */
  private releaseNested(i: number, n: number): void {
    const s = this.stack;
    let k = n;
    while (k >= 0 && s[S_LOCKS + 2 * k] !== i) k--;
    if (k < 0) throw new LockdepError(`lockdep: thread ${this.tid} releases ${this.describe(i).name}, which it does not hold`);
    if (k < n) s.copyWithin(S_LOCKS + 2 * k, S_LOCKS + 2 * k + 2, S_LOCKS + 2 * n + 2);
    s[S_DEPTH] = n;
  }

  /** How this thread holds word `i` (its topmost entry), or -1. */
  heldMode(i: number): number {
    const s = this.stack;
    for (let k = s[S_DEPTH] - 1; k >= 0; k--) if (s[S_LOCKS + 2 * k] === i) return s[S_LOCKS + 2 * k + 1] >>> MODE_SHIFT;
    return -1;
  }

  /** The words of the locks this thread holds, oldest first (what lockdep_sys_exit would list). */
  held(): number[] {
    const s = this.stack;
    if (this.w[this.epochWord] !== s[S_EPOCH]) return [];
    return Array.from({ length: s[S_DEPTH] }, (_, k) => s[S_LOCKS + 2 * k]);
  }

  private push(n: number, i: number, cls: number, mode: HeldMode): void {
    const s = this.stack;
    if (n === MAX_LOCK_DEPTH) throw new LockdepError(`lockdep: thread ${this.tid} holds ${MAX_LOCK_DEPTH} locks (MAX_LOCK_DEPTH)`);
    s[S_LOCKS + 2 * n] = i;
    s[S_LOCKS + 2 * n + 1] = cls | (mode << MODE_SHIFT);
    s[S_DEPTH] = n + 1;
  }

  /** The graph was emptied by a sandbox reset: so is what this thread held (a run that aborted left it). */
  private newEpoch(): void {
    this.stack[S_DEPTH] = 0;
    this.seen.fill(0);
    this.stack[S_EPOCH] = this.w[this.epochWord];
  }

  /** Taking `cls` under the n held locks: the dependencies this thread has not seen yet. */
  private dependencies(n: number, i: number, cls: number, mode: HeldMode): void {
    if (CLASS_LOCKDEP[cls] === 0) return;
    const s = this.stack;
    for (let k = 0; k < n; k++) {
      const from = s[S_LOCKS + 2 * k + 1] & CLS_MASK;
      if (from !== cls && CLASS_LOCKDEP[from] === 1 && this.seen[from * N + cls] === 0) this.dependency(k, i, cls, mode);
    }
  }

  /** The first time this thread takes `cls` while holding its k-th lock's class. */
  private dependency(k: number, i: number, cls: number, mode: HeldMode): void {
    const held = this.stack[S_LOCKS + 2 * k];
    const from = this.stack[S_LOCKS + 2 * k + 1] & CLS_MASK;
    this.seen[from * N + cls] = 1;
    if (Atomics.load(this.w, this.base + MATRIX + from * N + cls) !== 0) return;
    const heldMode = this.stack[S_LOCKS + 2 * k + 1] >>> MODE_SHIFT;
    const text =
      `thread ${this.tid} took ${this.describe(i).name} (${LOCK_CLASSES[cls].name}, ${MODE_NAMES[mode]}) ` +
      `while holding ${this.describe(held).name} (${LOCK_CLASSES[from].name}, ${MODE_NAMES[heldMode]}), at:\n${codeSite()}`;
    new LockGraph(this.mem).add(from, cls, this.tid, text);
  }
}

/** The code site of an acquisition: the frames outside the sync layer, paths from the project. */
function codeSite(): string {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = SITE_FRAMES + 12;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  return stack
    .split('\n')
    .slice(1)
    .filter((l) => !/[/\\]shm[/\\]s(ync|ched)[/\\]|node_modules|node:internal/.test(l))
    .slice(0, SITE_FRAMES)
    .map((l) => `    ${l.trim().replace(/(?:file:\/\/)?[^\s(]*?[/\\](?:dist[/\\])?((?:src|bench|test)[/\\])/, '$1')}`)
    .join('\n');
}

/** A reported inversion: the thread whose acquisition closed the cycle, and the text. */
export interface LockdepReport {
  tid: number;
  /** The classes of the cycle, from the one that was held when it closed. */
  classes: string[];
  text: string;
}

/** The class graph in the region: dependencies, their text, and the inversions found. */
class LockGraph {
  private readonly w: Int32Array;
  private readonly base: number;

  constructor(private readonly mem: Mem) {
    this.w = mem.w;
    this.base = regionBase(mem, REGION);
    assert(N * N + HEADER <= REPORTS && REC_WORDS * 4 >= EDGE_TEXT_BYTES, 'lockdep region holds the class matrix and the text');
  }

  private rec(r: number): number {
    return this.base + RECORDS + r * REC_WORDS;
  }

  /** Records dependency from -> to (unless another thread just did), and reports a cycle it closes. */
  add(from: number, to: number, tid: number, text: string): void {
    const w = this.w;
    const m = this.base + MATRIX + from * N + to;
    this.lock();
    try {
      if (Atomics.load(w, m) !== 0) return;
      const r = w[this.base + H_EDGES];
      assert(r < MAX_EDGES, `lockdep: more than ${MAX_EDGES} dependencies between ${N} classes`);
      const b = this.rec(r);
      w[b + R_FROM] = from;
      w[b + R_TO] = to;
      w[b + R_TID] = tid;
      // Encoded apart and copied: not every engine encodes into shared memory.
      const bytes = new TextEncoder().encode(text).subarray(0, EDGE_TEXT_BYTES);
      new Uint8Array(this.mem.buffers.meta, (b + R_TEXT) * 4, EDGE_TEXT_BYTES).set(bytes);
      w[b + R_LEN] = bytes.length;
      w[this.base + H_EDGES] = r + 1;
      const back = this.path(to, from);
      Atomics.store(w, m, r + 1);
      if (back !== null) this.report([r, ...back]);
    } finally {
      this.unlock();
    }
  }

  /** The dependencies of a path from class `a` to class `b` (breadth first: the shortest), or null. */
  private path(a: number, b: number): number[] | null {
    const w = this.w;
    const via = new Int32Array(N).fill(-1);
    via[a] = a;
    const queue = [a];
    for (let q = 0; q < queue.length; q++) {
      const u = queue[q];
      if (u === b) {
        const out: number[] = [];
        for (let v = b; v !== a; v = via[v]) out.unshift(w[this.base + MATRIX + via[v] * N + v] - 1);
        return out;
      }
      for (let v = 0; v < N; v++) {
        if (via[v] >= 0 || w[this.base + MATRIX + u * N + v] === 0) continue;
        via[v] = u;
        queue.push(v);
      }
    }
    return null;
  }

  private report(cycle: number[]): void {
    const w = this.w;
    const n = w[this.base + H_REPORTS];
    w[this.base + H_REPORTS] = n + 1;
    if (n >= REPORT_KEEP) return;
    const r = this.base + REPORTS + n * REPORT_WORDS;
    w[r] = cycle.length;
    cycle.forEach((e, k) => (w[r + 1 + k] = e));
  }

  /** lockdep's graph_lock: a spinlock held for a few hundred instructions, never across a wait. */
  private lock(): void {
    const i = this.base + H_GRAPH_LOCK;
    for (let n = 0; Atomics.compareExchange(this.w, i, 0, 1) !== 0; n++) if (n > 1000) Atomics.wait(this.w, i, 1, 1);
  }

  private unlock(): void {
    Atomics.store(this.w, this.base + H_GRAPH_LOCK, 0);
    Atomics.notify(this.w, this.base + H_GRAPH_LOCK, 1);
  }

  edgeText(r: number): string {
    const b = this.rec(r);
    return new TextDecoder().decode(new Uint8Array(this.mem.buffers.meta, (b + R_TEXT) * 4, this.w[b + R_LEN]).slice());
  }

  edge(r: number): { from: number; to: number; tid: number } {
    const b = this.rec(r);
    return { from: this.w[b + R_FROM], to: this.w[b + R_TO], tid: this.w[b + R_TID] };
  }

  edges(): number {
    return Atomics.load(this.w, this.base + H_EDGES);
  }

  /** The reports since the last call, and clears them (at a quiescent point). */
  take(): LockdepReport[] {
    const w = this.w;
    const n = Math.min(Atomics.exchange(w, this.base + H_REPORTS, 0), REPORT_KEEP);
    const out: LockdepReport[] = [];
    for (let k = 0; k < n; k++) {
      const r = this.base + REPORTS + k * REPORT_WORDS;
      const cycle = Array.from(w.subarray(r + 1, r + 1 + w[r]));
      out.push(this.describeCycle(cycle));
    }
    return out;
  }

  private describeCycle(cycle: number[]): LockdepReport {
    const [closing, ...back] = cycle.map((r) => ({ ...this.edge(r), text: this.edgeText(r) }));
    const classes = [closing.from, ...cycle.map((r) => this.edge(r).to)].map((c) => LOCK_CLASSES[c].name);
    const text =
      `lock order inversion: ${classes.join(' -> ')}\n${closing.text}\n` +
      `while the opposite order was taken before${back.length > 1 ? `, through ${back.length} dependencies` : ''}:\n` +
      back.map((e) => e.text).join('\n');
    return { tid: closing.tid, classes: classes.slice(0, -1), text };
  }
}

/** Inversions reported since the last call (a run's end, or the explorer's schedule end); clears them. */
export function takeLockdepReports(mem: Mem): LockdepReport[] {
  return new LockGraph(mem).take();
}

/** Every dependency recorded since the last reset, as "from -> to" with its text (tests, reports). */
export function lockdepDependencies(mem: Mem): Array<{ from: string; to: string; tid: number; text: string }> {
  const g = new LockGraph(mem);
  return Array.from({ length: g.edges() }, (_, r) => {
    const e = g.edge(r);
    return { from: LOCK_CLASSES[e.from].name, to: LOCK_CLASSES[e.to].name, tid: e.tid, text: g.edgeText(r) };
  });
}
