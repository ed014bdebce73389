// A doorbell between one leader thread and its followers, on a small SharedArrayBuffer of its
// own (outside the sandbox's memory, which the leader resets between rounds). The leader posts a
// round (a JSON payload) and rings; each follower wakes, does its part and arrives; the leader
// waits for every arrival. A round costs one wake-up per thread, where a control-plane call over
// a message port costs a port message and an event-loop turn on each side.

import { AbortReason, SyncAbortError } from './sync/sync.js';
import { type SyncControl } from './sync/control.js';

const GEN = 0;
const CMD = 1;
const ARRIVED = 2;
const EXPECTED = 3;
/** Followers that arrived with a finding (a violation) this round. */
const FLAGGED = 4;
/** Followers that arrived after an error of their own (not an abort of the run). */
const CRASHED = 5;
const PAYLOAD_LEN = 6;
/** Set by the controller when a thread of the rounds died: every wait of the rounds ends. */
const ABORT = 7;
/** Leader: the index (in its batch) of the round it leads, and whether that round's run is configured (index + 1). */
const LEADING = 8;
const CONFIGURED = 9;
const HEADER_WORDS = 16;

const CMD_ROUND = 1;
const CMD_STOP = 2;

/** The largest payload a round carries (UTF-8 JSON bytes). */
export const MAX_BELL_PAYLOAD = 64 << 10;

/** Longest a single wait sleeps before it looks at the sandbox's abort word again. */
const SLICE_MS = 50;

/**
 * Why the rounds must end: the doorbell's own abort, or the sandbox's for a shutdown, a dead
 * worker or a hung call (not a run's own end, a deadlock or a step limit). The doorbell's word
 * outlives the sandbox reset that clears the sandbox's.
 */
function fatalAbort(w: Int32Array, ctl: SyncControl): AbortReason {
  const own = Atomics.load(w, ABORT) as AbortReason;
  if (own !== AbortReason.NONE) return own;
  const r = ctl.abortReason();
  return r === AbortReason.SHUTDOWN || r === AbortReason.WORKER_DIED || r === AbortReason.TIMEOUT ? r : AbortReason.NONE;
}

export interface BellArrivals {
  flagged: number;
  crashed: number;
}

export class Bell {
  private readonly w: Int32Array;
  private readonly bytes: Buffer;

  /** A fresh doorbell's memory, to send to every thread of the rounds. */
  static allocate(): SharedArrayBuffer {
    return new SharedArrayBuffer(HEADER_WORDS * 4 + MAX_BELL_PAYLOAD);
  }

  constructor(
    sab: SharedArrayBuffer,
    private readonly ctl: SyncControl,
  ) {
    this.w = new Int32Array(sab, 0, HEADER_WORDS);
    this.bytes = Buffer.from(sab, HEADER_WORDS * 4, MAX_BELL_PAYLOAD);
  }

  /** The round counter a follower starts from. */
  generation(): number {
    return Atomics.load(this.w, GEN);
  }

  /** Leader: posts a round for `followers` threads and wakes them. */
  ring(payload: unknown, followers: number): void {
    const json = JSON.stringify(payload);
    const len = Buffer.byteLength(json, 'utf8');
    if (len > MAX_BELL_PAYLOAD) throw new Error(`bell: a round's payload takes ${len} bytes, more than ${MAX_BELL_PAYLOAD}`);
    const n = this.bytes.write(json, 0, 'utf8');
    Atomics.store(this.w, PAYLOAD_LEN, n);
    Atomics.store(this.w, ARRIVED, 0);
    Atomics.store(this.w, FLAGGED, 0);
    Atomics.store(this.w, CRASHED, 0);
    Atomics.store(this.w, EXPECTED, followers);
    Atomics.store(this.w, CMD, CMD_ROUND);
    Atomics.add(this.w, GEN, 1);
    Atomics.notify(this.w, GEN);
  }

  /** Leader: it starts round `index` of its batch; nothing of that round is configured yet. */
  leading(index: number): void {
    Atomics.store(this.w, LEADING, index);
    Atomics.store(this.w, CONFIGURED, 0);
  }
  /** Leader: the round's controlled run is configured (its scheduler log is that round's from now on). */
  configured(): void {
    Atomics.store(this.w, CONFIGURED, Atomics.load(this.w, LEADING) + 1);
  }
  /** Controller: which round of the batch the leader is on, and whether its run is configured. */
  progress(): { index: number; configured: boolean } {
    const index = Atomics.load(this.w, LEADING);
    return { index, configured: Atomics.load(this.w, CONFIGURED) === index + 1 };
  }

  /** Leader: no more rounds; followers waiting return null from next(). */
  stop(): void {
    Atomics.store(this.w, CMD, CMD_STOP);
    Atomics.add(this.w, GEN, 1);
    Atomics.notify(this.w, GEN);
  }

  /** Controller: a thread of the rounds is gone; every wait of the rounds throws SyncAbortError(reason). */
  abort(reason: AbortReason): void {
    Atomics.store(this.w, ABORT, reason);
    Atomics.notify(this.w, GEN);
    Atomics.notify(this.w, ARRIVED);
  }

  /** Follower: waits for the round after `seen`; its generation and payload, or null when stopped. */
  next<T>(seen: number): { gen: number; payload: T } | null {
    for (;;) {
      const gen = Atomics.load(this.w, GEN);
      if (gen !== seen) {
        if (Atomics.load(this.w, CMD) === CMD_STOP) return null;
        return { gen, payload: JSON.parse(this.bytes.toString('utf8', 0, Atomics.load(this.w, PAYLOAD_LEN))) as T };
      }
      const abort = fatalAbort(this.w, this.ctl);
      if (abort !== AbortReason.NONE) throw new SyncAbortError(abort);
      Atomics.wait(this.w, GEN, gen, SLICE_MS);
    }
  }

  /** Follower: its part of the round is done. */
  arrive(flagged: boolean, crashed: boolean): void {
    if (flagged) Atomics.add(this.w, FLAGGED, 1);
    if (crashed) Atomics.add(this.w, CRASHED, 1);
    if (Atomics.add(this.w, ARRIVED, 1) + 1 === Atomics.load(this.w, EXPECTED)) Atomics.notify(this.w, ARRIVED);
  }

  /** Throws SyncAbortError if the rounds must end (a dead worker, a shutdown, a hang). */
  throwIfAborted(): void {
    const abort = fatalAbort(this.w, this.ctl);
    if (abort !== AbortReason.NONE) throw new SyncAbortError(abort);
  }

  /** Leader: waits until every follower of the round arrived. */
  arrivals(): BellArrivals {
    for (;;) {
      const n = Atomics.load(this.w, ARRIVED);
      if (n >= Atomics.load(this.w, EXPECTED)) return { flagged: Atomics.load(this.w, FLAGGED), crashed: Atomics.load(this.w, CRASHED) };
      const abort = fatalAbort(this.w, this.ctl);
      if (abort !== AbortReason.NONE) throw new SyncAbortError(abort);
      Atomics.wait(this.w, ARRIVED, n, SLICE_MS);
    }
  }
}

/**
 * A follower's rounds: waits for each, runs `part` on its payload, arrives. An abort of the run
 * (a deadlock, a step limit) ends the part normally (its result is null). Any other error, even
 * before the part joined the run, aborts the sandbox (WORKER_DIED, as a dead worker does: the
 * actors waiting for this one to register unwind at once, and so does the leader), arrives as
 * crashed and is thrown. Returns every round's result.
 */
export function followRounds<P, R>(
  sab: SharedArrayBuffer,
  fromGen: number,
  ctl: SyncControl,
  part: (p: P) => R,
  flagged: (r: R) => boolean,
): Array<R | null> {
  const bell = new Bell(sab, ctl);
  const out: Array<R | null> = [];
  for (let seen = fromGen; ;) {
    let flag = false;
    try {
      const round = bell.next<P>(seen);
      if (round === null) return out;
      seen = round.gen;
      const r = part(round.payload);
      flag = flagged(r);
      out.push(r);
    } catch (e) {
      if (!(e instanceof SyncAbortError)) {
        ctl.abort(AbortReason.WORKER_DIED);
        bell.arrive(false, true);
        throw e;
      }
      // A fatal abort (shutdown, a dead worker) ends the rounds; a run's own end, only the part.
      bell.throwIfAborted();
      out.push(null);
    }
    bell.arrive(flag, false);
  }
}
