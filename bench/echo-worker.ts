// A bare peer for the raw round-trip baselines: it echoes a ping-pong counter on one shared word,
// either spinning on it (a cache-line round trip) or sleeping on it with Atomics.wait/notify (a
// futex round trip). The controller writes odd values; this worker answers with value + 1.
// One session per message; the worker's event loop is idle (no CPU) between sessions.

import { parentPort } from 'node:worker_threads';

/** Word layout of the session buffer (each on its own cache line). */
export const PING = 0;
export const STOP = 16;
export const SESSION_WORDS = 32;

export interface Session {
  /** futex-clock: as futex, reading the clock once after each wake-up, as FreeSync.sleep does. */
  mode: 'spin' | 'futex' | 'futex-clock';
  sab: SharedArrayBuffer;
}

function spin(w: Int32Array): void {
  for (let expect = 1; ; expect += 2) {
    for (let n = 1; Atomics.load(w, PING) !== expect; n++) {
      if ((n & 1023) === 0 && Atomics.load(w, STOP) !== 0) return;
    }
    Atomics.store(w, PING, expect + 1);
  }
}

let clockSink = 0;

function futex(w: Int32Array, clock: boolean): void {
  let expect = 1;
  for (;;) {
    const c = Atomics.load(w, PING);
    if (c === expect) {
      Atomics.store(w, PING, expect + 1);
      Atomics.notify(w, PING, 1);
      expect += 2;
      continue;
    }
    if (Atomics.load(w, STOP) !== 0) return;
    Atomics.wait(w, PING, c);
    if (clock) clockSink += performance.now();
  }
}

if (parentPort !== null) {
  const port = parentPort;
  port.on('message', (s: Session) => {
    const w = new Int32Array(s.sab);
    if (s.mode === 'spin') spin(w);
    else futex(w, s.mode === 'futex-clock');
    port.postMessage(clockSink > 0 ? 'done' : 'done.');
  });
}
