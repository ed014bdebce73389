// The explorer's doorbell (src/shm/bell.ts) on real threads: rounds rung before a follower starts
// waiting are not lost, arrivals count findings and errors, a follower whose part throws arrives
// as crashed for the rest of the batch and throws once the rounds stop, and an abort ends waits.

import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Bell } from '../src/shm/bell.js';
import type { SyncControl } from '../src/shm/sync.js';

const BELL = new URL('../dist/src/shm/bell.js', import.meta.url).href;

/** A follower thread: part(round) = round * 10 + me, throwing at `failAt` for `who`; flagged when the result is 10. */
function follower(sab: SharedArrayBuffer, me: number): Promise<{ ok?: Array<number | null>; err?: string }> {
  const code = `
    import { workerData, parentPort } from 'node:worker_threads';
    import { followRounds } from ${JSON.stringify(BELL)};
    const { sab, me } = workerData;
    try {
      const rs = followRounds(sab, 0, { abortReason: () => 0 }, (p) => {
        if (p.failAt === p.round && p.who === me) throw new Error('boom ' + me);
        return p.round * 10 + me;
      }, (r) => r === 10);
      parentPort.postMessage({ ok: rs });
    } catch (e) {
      parentPort.postMessage({ err: e.message });
    }`;
  const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { workerData: { sab, me } });
  return new Promise((resolve, reject) => {
    w.once('message', (m) => {
      resolve(m);
      void w.terminate();
    });
    w.once('error', reject);
  });
}

const noAbort = { abortReason: () => 0 } as unknown as SyncControl;

describe('the doorbell', () => {
  it('rounds reach every follower, arrivals count findings and errors, and a failed follower throws after the stop', async () => {
    const sab = Bell.allocate();
    const bell = new Bell(sab, noAbort);
    // Rung before either thread has started: the first round is the one after generation 0.
    bell.ring({ round: 1 }, 2);
    const done = [follower(sab, 0), follower(sab, 1)];
    expect(bell.arrivals()).toEqual({ flagged: 1, crashed: 0 });
    bell.ring({ round: 2, failAt: 2, who: 1 }, 2);
    expect(bell.arrivals()).toEqual({ flagged: 0, crashed: 1 });
    // The failed follower does not run later rounds; it arrives as crashed.
    bell.ring({ round: 3 }, 2);
    expect(bell.arrivals()).toEqual({ flagged: 0, crashed: 1 });
    bell.stop();
    const [a, b] = await Promise.all(done);
    expect(a).toEqual({ ok: [10, 20, 30] });
    expect(b).toEqual({ err: 'boom 1' });
  });

  it('an abort ends a wait for arrivals that will never come', async () => {
    const sab = Bell.allocate();
    const bell = new Bell(sab, noAbort);
    bell.ring({ round: 1 }, 1);
    bell.abort(2);
    expect(() => bell.arrivals()).toThrow(/aborted \(reason 2\)/);
    expect(() => bell.next(bell.generation())).toThrow(/aborted \(reason 2\)/);
  });

  it('refuses a payload larger than its buffer, naming the limit', () => {
    const bell = new Bell(Bell.allocate(), noAbort);
    expect(() => bell.ring({ big: 'x'.repeat(70_000) }, 1)).toThrow(/bell: a round's payload takes more than 65536 bytes/);
  });
});
