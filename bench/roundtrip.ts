// Group 'roundtrip' (issue items 3 and 4): round trips between the controller and one worker.
//  - baselines: a cache-line ping-pong (both sides spin on one shared word) and a futex
//    ping-pong (both sides Atomics.wait / Atomics.notify on it), against bench/echo-worker;
//  - the firmware mailbox: MailboxPlatform.nop() against the real firmware worker serving
//    serveFirmware, back to back (server awake, spinning) and spaced so that the server has gone
//    to sleep before each call;
//  - a comlink call of an empty method on a worker (bench/comlink-worker), the control plane.

import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { FIRMWARE_MAILBOX, MailboxPlatform } from '../src/firmware/mailbox.js';
import type { FirmwareWorkerApi } from '../src/firmware/worker.js';
import { type Mem, mapBuffers } from '../src/shm/layout.js';
import { Mailbox, type MailboxTuning } from '../src/shm/mailbox.js';
import { type Remote, wrapWorker } from '../src/shm/rpc.js';
import { FreeSync } from '../src/shm/sync.js';
import { type SandboxDescriptor, buildSandboxMemory } from '../src/vmm/build.js';
import { TID_FIRMWARE, workerFile } from '../src/vmm/runtime.js';
import { PING, SESSION_WORDS, STOP, type Session } from './echo-worker.js';
import { type Ctx, type Sampled, napMs, tinyAsync, tinySync } from './measure.js';
import type { Row } from './table.js';

/** The controller's side of bench/echo-worker: one session (spin or futex) at a time. */
export class EchoPeer {
  private readonly sab = new SharedArrayBuffer(SESSION_WORDS * 4);
  private readonly w = new Int32Array(this.sab);
  private v = 1;
  private done: Promise<unknown> | null = null;

  private constructor(private readonly worker: Worker) {}

  static async start(): Promise<EchoPeer> {
    const worker = new Worker(new URL('./echo-worker.js', import.meta.url), { name: 'bench echo' });
    await once(worker, 'online');
    return new EchoPeer(worker);
  }

  begin(mode: Session['mode']): void {
    if (this.done !== null) throw new Error('echo peer: session already running');
    Atomics.store(this.w, PING, 0);
    Atomics.store(this.w, STOP, 0);
    this.v = 1;
    this.done = once(this.worker, 'message');
    this.worker.postMessage({ mode, sab: this.sab } satisfies Session);
  }

  /** One round trip with both sides spinning. */
  spinRoundTrip(): void {
    const w = this.w;
    const v = this.v;
    this.v += 2;
    Atomics.store(w, PING, v);
    for (let n = 1; Atomics.load(w, PING) !== v + 1; n++) {
      if ((n & 0xffffff) === 0 && this.done === null) throw new Error('echo peer: no session');
    }
  }

  /** One round trip with both sides sleeping in Atomics.wait until notified. */
  futexRoundTrip(): void {
    const w = this.w;
    const v = this.v;
    this.v += 2;
    Atomics.store(w, PING, v);
    Atomics.notify(w, PING, 1);
    for (;;) {
      const c = Atomics.load(w, PING);
      if (c === v + 1) return;
      if (Atomics.wait(w, PING, c, 5000) === 'timed-out') throw new Error('echo peer: no answer within 5 s');
    }
  }

  async end(): Promise<void> {
    Atomics.store(this.w, STOP, 1);
    Atomics.notify(this.w, PING);
    await this.done;
    this.done = null;
  }

  async close(): Promise<void> {
    if (this.done !== null) await this.end();
    await this.worker.terminate();
  }
}

/** The firmware worker (dist/src/firmware/worker.js) serving one sandbox's mailbox. */
export class FirmwareServer {
  private constructor(
    private readonly worker: Worker,
    private readonly mem: Mem,
    readonly serving: Promise<number>,
  ) {}

  static async start(descriptor: SandboxDescriptor, tuning?: MailboxTuning): Promise<FirmwareServer> {
    const worker = new Worker(workerFile('firmware/worker.js'), { name: 'bench firmware' });
    const api: Remote<FirmwareWorkerApi> = wrapWorker<FirmwareWorkerApi>(worker);
    const serving = api.serve(descriptor.buffers, TID_FIRMWARE, tuning);
    serving.catch(() => undefined);
    const fs = new FirmwareServer(worker, mapBuffers(descriptor.buffers), serving);
    // The first NOP blocks until the worker has loaded and entered serve(): it needs nothing
    // from this thread's event loop (the serve request is queued on the worker's port).
    await once(worker, 'online');
    new MailboxPlatform(fs.mem, new FreeSync(fs.mem, 0), tuning).nop();
    return fs;
  }

  mailbox(): Mailbox {
    return new Mailbox(this.mem, FIRMWARE_MAILBOX, new FreeSync(this.mem, 0));
  }

  async stop(): Promise<void> {
    this.mailbox().stop();
    await Promise.race([this.serving.catch(() => 0), new Promise((r) => setTimeout(r, 2000))]);
    await this.worker.terminate();
  }
}

/** A sandbox memory just big enough for the mailbox benchmarks. */
export function tinySandbox(): SandboxDescriptor {
  return buildSandboxMemory({ memory: '1MiB', gpaSpace: '4MiB', userMemory: '64KiB', gmemSpace: '4MiB', maxVms: 1 });
}

export async function runRoundtrip(ctx: Ctx): Promise<Row[]> {
  const rows: Row[] = [];
  const q = ctx.quick;
  const timed = { timeMs: q ? 80 : 800, warmupMs: q ? 20 : 150 };
  const SPIN_BATCH = 100;
  const row = (name: string, s: Sampled, extra: Partial<Row> = {}): void => {
    rows.push({ group: 'roundtrip', name, kind: 'time', ...s, ...extra });
  };

  // Raw baselines.
  const peer = await EchoPeer.start();
  try {
    ctx.log('roundtrip: spin ping-pong');
    peer.begin('spin');
    row('rt.spin', tinySync('rt.spin', () => { for (let i = 0; i < SPIN_BATCH; i++) peer.spinRoundTrip(); }, { ...timed, batch: SPIN_BATCH }), {
      note: `cache-line ping-pong, batches of ${SPIN_BATCH}`,
    });
    await peer.end();
    ctx.log('roundtrip: futex ping-pong');
    peer.begin('futex');
    row('rt.futex', tinySync('rt.futex', () => peer.futexRoundTrip(), timed), { note: 'Atomics.wait/notify ping-pong, per call' });
    await peer.end();
  } finally {
    await peer.close();
  }

  // The firmware mailbox against the firmware worker.
  const desc = tinySandbox();
  const fw = await FirmwareServer.start(desc);
  try {
    const mem = mapBuffers(desc.buffers);
    const client = new MailboxPlatform(mem, new FreeSync(mem, 0));
    const mb = fw.mailbox();
    ctx.log('roundtrip: mailbox nop, server awake');
    row('mailbox.nop.awake', tinySync('mailbox.nop.awake', () => { for (let i = 0; i < SPIN_BATCH; i++) client.nop(); }, { ...timed, batch: SPIN_BATCH }), {
      baseline: 'rt.spin',
      target: { op: '<=', ratio: 3 },
      note: `back to back, batches of ${SPIN_BATCH}`,
    });
    ctx.log('roundtrip: mailbox nop, server asleep');
    let notAsleep = 0;
    const waitAsleep = (): void => {
      // Wait until the server has spun out and gone to sleep, then a little more so that it is
      // inside Atomics.wait, not just announcing it.
      for (let t = 0; !mb.serverSleeping(); t++) {
        if (t > 5000) {
          notAsleep++;
          break;
        }
        napMs(0.1);
      }
      napMs(0.2);
    };
    row('mailbox.nop.asleep', tinySync('mailbox.nop.asleep', () => client.nop(), { timeMs: 0, warmupMs: 0, iterations: q ? 40 : 600, beforeEach: waitAsleep }), {
      baseline: 'rt.futex',
      target: { op: '<=', ratio: 1.2 },
      note: `each call after the server fell asleep${notAsleep ? ` (${notAsleep} not asleep)` : ''}`,
    });
  } finally {
    await fw.stop();
  }

  // comlink: the same empty work over the control plane.
  const cw = new Worker(new URL('./comlink-worker.js', import.meta.url), { name: 'bench comlink' });
  try {
    const api = wrapWorker<{ nop(): number }>(cw);
    await api.nop();
    ctx.log('roundtrip: comlink nop');
    row('rt.comlink', await tinyAsync('rt.comlink', () => api.nop(), timed), {
      baseline: 'mailbox.nop.awake',
      target: { op: '>=', ratio: 20 },
      note: 'comlink call of an empty method, per call (ratio: times slower than the mailbox)',
    });
  } finally {
    await cw.terminate();
  }
  return rows;
}
