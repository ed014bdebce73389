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
import { FreeSync } from '../src/shm/sync/free.js';
import { type SandboxDescriptor, buildSandboxMemory } from '../src/vmm/sandbox/build.js';
import { TID_FIRMWARE, workerFile } from '../src/vmm/sandbox/runtime.js';
import { PING, SESSION_WORDS, STOP, type Session } from './echo-worker.js';
import { Histogram } from './histogram.js';
import { type Ctx, type Sampled, alternateBlocks, histSampled, napMs, tinyAsync, tinySync } from './measure.js';
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
    for (let n = 1, t0 = 0; Atomics.load(w, PING) !== v + 1; n++) {
      if ((n & 0xfffff) !== 0) continue;
      // A dead or absent peer must not hang the run.
      if (t0 === 0) t0 = performance.now();
      else if (performance.now() - t0 > 5000) throw new Error('echo peer: no answer within 5 s');
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

/** How long both sides sleep before an "asleep" call (after the server's own spin, ~0.5 ms). */
const IDLE_GAP_MS = 1;

export async function runRoundtrip(ctx: Ctx): Promise<Row[]> {
  const rows: Row[] = [];
  const q = ctx.quick;
  const timed = { timeMs: q ? 80 : 800, warmupMs: q ? 20 : 150 };
  const SPIN_BATCH = 100;
  const row = (name: string, s: Sampled, extra: Partial<Row> = {}): void => {
    rows.push({ group: 'roundtrip', name, kind: 'time', ...s, ...extra });
  };

  const peer = await EchoPeer.start();
  const desc = tinySandbox();
  const fw = await FirmwareServer.start(desc);
  try {
    const mem = mapBuffers(desc.buffers);
    const client = new MailboxPlatform(mem, new FreeSync(mem, 0));
    const mb = fw.mailbox();

    // The futex ping-pong, back to back (the firmware worker has gone to sleep meanwhile).
    ctx.log('roundtrip: futex ping-pong');
    peer.begin('futex');
    const futex = tinySync('rt.futex', () => peer.futexRoundTrip(), timed);
    row('rt.futex', futex, { note: 'Atomics.wait/notify ping-pong, back to back, per call' });
    await peer.end();

    // Server awake vs the cache-line ping-pong. Both are timed in batches, in alternating
    // blocks: how fast a cache line crosses between the two CPUs changes by 3-5x over seconds
    // on this VM (where the host puts its two vCPUs), so each is compared with its neighbour in
    // time. A ping-pong block starts once the firmware worker has spun out and slept (three
    // spinning threads on two CPUs would measure the scheduler); during a mailbox block the echo
    // worker is stopped.
    ctx.log('roundtrip: spin ping-pong and mailbox nop, back to back');
    const hSpin = new Histogram();
    const hAwake = new Histogram();
    const serverAsleep = (): void => {
      for (let t = 0; t < 10_000 && !mb.serverSleeping(); t++) napMs(0.1);
    };
    await alternateBlocks({ blocks: q ? 3 : 24, perBlock: q ? 20 : 60, skip: 5, batch: SPIN_BATCH }, [
      {
        h: hSpin,
        op: () => peer.spinRoundTrip(),
        enter: () => {
          serverAsleep();
          peer.begin('spin');
        },
        leave: () => peer.end(),
      },
      { h: hAwake, op: () => client.nop() },
    ]);
    row('rt.spin', histSampled(hSpin), { note: `cache-line ping-pong, batches of ${SPIN_BATCH}` });
    row('mailbox.nop.awake', histSampled(hAwake), {
      baseline: 'rt.spin',
      target: { op: '<=', ratio: 3 },
      note: `back to back, batches of ${SPIN_BATCH}, in blocks alternating with rt.spin`,
    });

    // Server asleep: each call comes after the server spun out and then slept IDLE_GAP_MS. Its
    // fair baseline is a futex round trip with a peer that slept as long, so the two are sampled
    // alternately in one loop (the host's wake-up latency drifts with its halt-polling state, by
    // 5x over seconds on this VM, and depends on how long the woken CPU has been idle).
    ctx.log('roundtrip: futex round trip and mailbox nop after idling');
    let notAsleep = 0;
    const idle = (): void => {
      for (let t = 0; !mb.serverSleeping(); t++) {
        if (t > 10_000) {
          notAsleep++;
          break;
        }
        napMs(0.1);
      }
      napMs(IDLE_GAP_MS);
    };
    peer.begin('futex');
    const clockPeer = await EchoPeer.start();
    clockPeer.begin('futex-clock');
    const hFutex = new Histogram();
    const hClock = new Histogram();
    const hMailbox = new Histogram();
    const n = q ? 40 : 600;
    const warm = q ? 10 : 40;
    const kinds = [
      [hFutex, () => peer.futexRoundTrip()],
      [hClock, () => clockPeer.futexRoundTrip()],
      [hMailbox, () => client.nop()],
    ] as const;
    try {
      for (let i = 0; i < warm + n; i++) {
        for (let j = 0; j < kinds.length; j++) {
          const [h, call] = kinds[(i + j) % kinds.length];
          idle();
          const t0 = process.hrtime.bigint();
          call();
          const ns = Number(process.hrtime.bigint() - t0);
          if (i >= warm) h.record(ns);
        }
      }
    } finally {
      await clockPeer.close();
    }
    await peer.end();
    row('rt.futex.idle', histSampled(hFutex), { note: `one futex round trip after both sides slept ${IDLE_GAP_MS} ms or more, per call` });
    row('rt.futex.idle.clock', histSampled(hClock), {
      baseline: 'rt.futex.idle',
      note: 'the same, the peer reading the clock once after it wakes (as FreeSync.sleep does)',
    });
    const asleep = histSampled(hMailbox);
    const asleepNote = `each call after the server slept ${IDLE_GAP_MS} ms, sampled in turn with rt.futex.idle${notAsleep ? `; ${notAsleep} calls found it awake` : ''}`;
    row('mailbox.nop.asleep', asleep, {
      baseline: 'rt.futex',
      target: { op: '<=', ratio: 1.2 },
      note: `${asleepNote}; vs the back-to-back futex baseline`,
    });
    row('mailbox.nop.asleep.strict', asleep, {
      baseline: 'rt.futex.idle',
      target: { op: '<=', ratio: 1.2 },
      note: 'the same samples, vs a futex round trip from the same idle state',
    });
  } finally {
    await fw.stop();
    await peer.close();
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
