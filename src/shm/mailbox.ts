// A many-clients, one-server mailbox on shared memory: each client thread owns one request slot
// (its own cache line), so producers never contend on a shared tail; a pending bitmask is the
// doorbell. The server drains every pending slot per wake-up, spins briefly when idle, then
// sleeps; clients spin briefly for the answer, then sleep. Nobody calls notify unless someone
// sleeps. One outstanding request per client thread: calls are synchronous, as KVM's are.

import { LayoutBuilder, type Mem, regionBase } from './layout.js';
import type { Sync } from './sync/sync.js';

const H_PENDING = 0; // two words: client bits 0-31, 32-63
const H_SERVER_SLEEPING = 2;
const H_DOORBELL = 3; // bumped to wake a sleeping server
const H_STOP = 4;
const H_SERVED = 5;
const HEADER_WORDS = 16;

const SLOT_WORDS = 16;
const S_REQ = 0;
const S_DONE = 1;
const S_CLIENT_SLEEPING = 2;
const S_CMD = 3;
export const MAILBOX_ARGS = 6;
const S_ARGS = 4;
const S_RESULT = S_ARGS + MAILBOX_ARGS;

export const MAX_MAILBOX_CLIENTS = 64;

export function declareMailbox(lb: LayoutBuilder, name: string, owner: string): void {
  lb.add(name, HEADER_WORDS + MAX_MAILBOX_CLIENTS * SLOT_WORDS, owner);
}

export interface MailboxTuning {
  /** Loads a client spins waiting for its answer before it sleeps. */
  clientSpin: number;
  /** Loads the idle server spins on the doorbell before it sleeps. */
  serverSpin: number;
  /**
   * Loads a client spins after it had to wake the sleeping server (default 0: it sleeps at once;
   * never more than clientSpin). Its answer cannot come before the server's wake-up, tens of
   * microseconds, far beyond clientSpin: spinning then only takes CPU from the thread being
   * woken. On the 2-CPU machine a 2000-load spin there made such a call ~20x slower (bench/).
   */
  clientWakeSpin?: number;
}
export const DEFAULT_MAILBOX_TUNING: MailboxTuning = { clientSpin: 2000, serverSpin: 20000, clientWakeSpin: 0 };
const DEFAULT_CLIENT_WAKE_SPIN = 0;

export class Mailbox {
  readonly base: number;
  private readonly w: Int32Array;

  constructor(
    mem: Mem,
    name: string,
    private readonly sync: Sync,
    private readonly tuning: MailboxTuning = DEFAULT_MAILBOX_TUNING,
  ) {
    this.base = regionBase(mem, name);
    this.w = mem.w;
  }

  private slot(client: number): number {
    return this.base + HEADER_WORDS + client * SLOT_WORDS;
  }

  /** Sends a request from the calling thread and waits for its result. */
  call(cmd: number, a0 = 0, a1 = 0, a2 = 0, a3 = 0): number {
    const w = this.w;
    const me = this.sync.tid;
    const s = this.slot(me);
    w[s + S_CMD] = cmd;
    w[s + S_ARGS] = a0;
    w[s + S_ARGS + 1] = a1;
    w[s + S_ARGS + 2] = a2;
    w[s + S_ARGS + 3] = a3;
    const seq = (w[s + S_REQ] + 1) | 0;
    // Plain writes: the Atomics.or that raises the pending bit publishes them with the command
    // (the server reads them after its Atomics.exchange of that word has seen the bit).
    w[s + S_REQ] = seq;
    Atomics.or(w, this.base + H_PENDING + (me >> 5), 1 << (me & 31));
    let spin = this.tuning.clientSpin;
    if (Atomics.load(w, this.base + H_SERVER_SLEEPING) !== 0) {
      Atomics.add(w, this.base + H_DOORBELL, 1);
      this.sync.wake(this.base + H_DOORBELL, 1);
      spin = Math.min(spin, this.tuning.clientWakeSpin ?? DEFAULT_CLIENT_WAKE_SPIN);
    }
    for (let n = 0; n < spin; n++) {
      if (Atomics.load(w, s + S_DONE) === seq) return Atomics.load(w, s + S_RESULT);
    }
    Atomics.store(w, s + S_CLIENT_SLEEPING, 1);
    try {
      for (let d = Atomics.load(w, s + S_DONE); d !== seq; d = Atomics.load(w, s + S_DONE)) this.sync.waitWhileEquals(s + S_DONE, d, 0);
    } finally {
      Atomics.store(w, s + S_CLIENT_SLEEPING, 0);
    }
    return Atomics.load(w, s + S_RESULT);
  }

  /**
   * Serves requests with `handle(cmd, args)` until stop() is called. Each wake-up drains every
   * pending slot. Returns the number of requests served.
   */
  serve(handle: (client: number, cmd: number, a0: number, a1: number, a2: number, a3: number) => number): number {
    const w = this.w;
    const b = this.base;
    let served = 0;
    for (;;) {
      const m0 = Atomics.exchange(w, b + H_PENDING, 0);
      // Clients 32-63 are rare: look before taking the second word.
      const m1 = Atomics.load(w, b + H_PENDING + 1) !== 0 ? Atomics.exchange(w, b + H_PENDING + 1, 0) : 0;
      if ((m0 | m1) !== 0) {
        served += this.drain(m0, 0, handle) + this.drain(m1, 32, handle);
        continue;
      }
      if (Atomics.load(w, b + H_STOP) !== 0 || this.sync.aborted()) break;
      let idle = true;
      // The spin looks at the first pending word first (one load to see a request), and at
      // stop only every 64 rounds: a shorter round answers sooner.
      for (let n = 0; n < this.tuning.serverSpin; n++) {
        if (
          Atomics.load(w, b + H_PENDING) !== 0 ||
          Atomics.load(w, b + H_PENDING + 1) !== 0 ||
          ((n & 63) === 63 && Atomics.load(w, b + H_STOP) !== 0)
        ) {
          idle = false;
          break;
        }
      }
      if (!idle) continue;
      Atomics.store(w, b + H_SERVER_SLEEPING, 1);
      const bell = Atomics.load(w, b + H_DOORBELL);
      if ((Atomics.load(w, b + H_PENDING) | Atomics.load(w, b + H_PENDING + 1)) === 0 && Atomics.load(w, b + H_STOP) === 0) {
        this.sync.idleWhileEquals(b + H_DOORBELL, bell, 0);
      }
      Atomics.store(w, b + H_SERVER_SLEEPING, 0);
    }
    Atomics.add(w, b + H_SERVED, served);
    return served;
  }

  private drain(
    mask: number,
    first: number,
    handle: (client: number, cmd: number, a0: number, a1: number, a2: number, a3: number) => number,
  ): number {
    const w = this.w;
    let n = 0;
    while (mask !== 0) {
      const bit = 31 - Math.clz32(mask);
      mask &= ~(1 << bit);
      const client = first + bit;
      const s = this.slot(client);
      const seq = Atomics.load(w, s + S_REQ);
      const r = handle(client, w[s + S_CMD], w[s + S_ARGS], w[s + S_ARGS + 1], w[s + S_ARGS + 2], w[s + S_ARGS + 3]);
      // A plain write, published by the Atomics.store of DONE the client waits for.
      w[s + S_RESULT] = r;
      Atomics.store(w, s + S_DONE, seq);
      if (Atomics.load(w, s + S_CLIENT_SLEEPING) !== 0) this.sync.wake(s + S_DONE, 1);
      n++;
    }
    return n;
  }

  /** Asks the server to return from serve() once the queue is empty. */
  stop(): void {
    Atomics.store(this.w, this.base + H_STOP, 1);
    Atomics.add(this.w, this.base + H_DOORBELL, 1);
    this.sync.wake(this.base + H_DOORBELL, 1);
  }
  reset(): void {
    Atomics.store(this.w, this.base + H_STOP, 0);
  }
  served(): number {
    return Atomics.load(this.w, this.base + H_SERVED);
  }
  /** True while the server is asleep on the doorbell (benchmarks use it to time a cold call). */
  serverSleeping(): boolean {
    return Atomics.load(this.w, this.base + H_SERVER_SLEEPING) !== 0;
  }
}
