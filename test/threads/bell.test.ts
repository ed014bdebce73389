// The explorer's doorbell (shm/bell.ts) on real threads: rounds rung before a follower starts
// waiting are not lost, arrivals count findings and errors, a follower whose part throws aborts the
// sandbox (so that nobody waits for it), arrives as crashed and throws, and an abort ends waits. The
// tool's own primitive: no kernel function is modelled here.

import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Bell } from '../../src/shm/bell.js';
import type { SyncControl } from '../../src/shm/sync/control.js';
import { AbortReason } from '../../src/shm/sync/sync.js';

const BELL = new URL('../../dist/src/shm/bell.js', import.meta.url).href;

/** A follower thread: part(round) = round * 10 + me, throwing at `failAt` for `who`; flagged when the result is 10. */
function follower(sab: SharedArrayBuffer, me: number, aborts: Int32Array): Promise<{ ok?: Array<number | null>; err?: string }> {
  const code = `
    import { workerData, parentPort } from 'node:worker_threads';
    import { followRounds } from ${JSON.stringify(BELL)};
    const { sab, me, aborts } = workerData;
    try {
      const ctl = { abortReason: () => 0, abort: (r) => Atomics.store(aborts, me, r) };
      const rs = followRounds(sab, 0, ctl, (p) => {
        if (p.failAt === p.round && p.who === me) throw new Error('boom ' + me);
        return p.round * 10 + me;
      }, (r) => r === 10);
      parentPort.postMessage({ ok: rs });
    } catch (e) {
      parentPort.postMessage({ err: e.message });
    }`;
  const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { workerData: { sab, me, aborts } });
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
  it('rounds reach every follower, arrivals count findings and errors, and a failed follower aborts and throws', async () => {
    const sab = Bell.allocate();
    const bell = new Bell(sab, noAbort);
    const aborts = new Int32Array(new SharedArrayBuffer(8));
    // Rung before either thread has started: the first round is the one after generation 0.
    bell.ring({ round: 1 }, 2);
    const done = [follower(sab, 0, aborts), follower(sab, 1, aborts)];
    expect(bell.arrivals()).toEqual({ flagged: 1, crashed: 0 });
    bell.ring({ round: 2, failAt: 2, who: 1 }, 2);
    expect(bell.arrivals()).toEqual({ flagged: 0, crashed: 1 });
    bell.stop();
    const [a, b] = await Promise.all(done);
    expect(a).toEqual({ ok: [10, 20] });
    expect(b).toEqual({ err: 'boom 1' });
    // The failed one aborted the sandbox (as a dead worker does); the other did not.
    expect(Array.from(aborts)).toEqual([AbortReason.NONE, AbortReason.WORKER_DIED]);
  });

  it('an abort ends a wait for arrivals that will never come', async () => {
    const sab = Bell.allocate();
    const bell = new Bell(sab, noAbort);
    bell.ring({ round: 1 }, 1);
    bell.abort(AbortReason.WORKER_DIED);
    expect(() => bell.arrivals()).toThrow(/^sandbox aborted \(a worker died\) while waiting$/);
    expect(() => bell.next(bell.generation())).toThrow(/^sandbox aborted \(a worker died\) while waiting$/);
  });

  it('refuses a payload larger than its buffer, naming the limit', () => {
    const bell = new Bell(Bell.allocate(), noAbort);
    expect(() => bell.ring({ big: 'x'.repeat(70_000) }, 1)).toThrow(/bell: a round's payload takes 70010 bytes, more than 65536/);
  });
});
