// A crashed worker and a deliberate deadlock are reported, naming what went wrong, and never hang
// the run: an exception, an uncaught error and an exit of a worker (through the test worker's
// hooks, test/workers/vcpu-test-worker.ts; the shipped one has none); and a vCPU sleeping on a
// folio lock another vCPU holds inside kvm_gmem_get_pfn (folio_lock, filemap_grab_folio), ended by
// the watchdog or the call timeout with who waits on what.

import { afterEach, describe, expect, it } from 'vitest';
import { pointId } from '../../src/shm/points.js';
import { AbortReason } from '../../src/shm/sync/sync.js';
import { VcpuWorker } from '../../src/vcpu-workers/api.js';
import {
  TEST_VCPU_WORKER,
  expectOk,
  expectQuiescentAuditClean,
  expectTeardownAuditClean,
  setupVm,
  shutdownAll,
  startRuntime,
  testHooks,
} from '../helpers/runtime-helpers.js';

afterEach(shutdownAll);

const POLICY = 'prepare-on-fault-own-vm';

describe('a crashed worker', () => {
  it('an exception in a call rejects that call only; the worker lives on', async () => {
    const rt = await startRuntime(POLICY, {}, undefined, { vcpuWorker: TEST_VCPU_WORKER });
    await setupVm(rt, 'sw-protected', 1);
    const c = rt.vcpu('a', 0);
    await expect(rt.call(c, () => testHooks(c).crash('boom'))).rejects.toThrow(/^boom$/);
    expect(rt.crashes).toEqual([]);
    expect(rt.control.abortReason()).toBe(AbortReason.NONE);
    expect(await c.api.exec({ op: 'guest_read', gpa: 0, len: 2 })).toEqual({ result: 'ok', value: '0000' });
  });

  it('an uncaught exception at the top level of a worker is a crash report of kind error', async () => {
    const rt = await startRuntime(POLICY);
    await setupVm(rt, 'sw-protected', 2);
    const c = rt.vcpu('a', 1);
    // A malformed control message: comlink decodes the arguments outside its try/catch, so the
    // TypeError escapes the worker's message handler and kills the thread.
    c.worker.postMessage({
      id: 'x',
      type: 'APPLY',
      path: ['exec'],
      argumentList: [{ type: 'HANDLER', name: 'no-such-handler', value: 0 }],
    });
    await expect(c.dead).rejects.toThrow(/^vcpu 1 of vm a crashed: .*deserialize/);
    expect(rt.crashes).toHaveLength(1);
    expect(rt.crashes[0]).toMatchObject({ actor: 'vcpu 1 of vm a', kind: 'error' });
    expect(rt.crashes[0].message).toMatch(/deserialize/);
    expect(rt.crashes[0].stack).toMatch(/TypeError/);
    // Any later call on the dead worker fails at once with the crash.
    await expect(rt.call(c, () => c.api.exec({ op: 'guest_read', gpa: 0, len: 2 }))).rejects.toThrow(/vcpu 1 of vm a crashed/);
    // The runtime aborted every wait so that nobody hangs on a lock the dead thread held.
    expect(rt.control.abortReason()).toBe(AbortReason.WORKER_DIED);
    const t0 = performance.now();
    await rt.shutdown();
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('a worker that exits is a crash report of kind exit with its code', async () => {
    const rt = await startRuntime(POLICY, {}, undefined, { vcpuWorker: TEST_VCPU_WORKER });
    await setupVm(rt, 'sw-protected', 1);
    const c = rt.vcpu('a', 0);
    await expect(rt.call(c, () => testHooks(c).exitNow(3))).rejects.toThrow('vcpu 0 of vm a exited: thread exited with code 3');
    expect(rt.crashes).toEqual([{ actor: 'vcpu 0 of vm a', kind: 'exit', message: 'thread exited with code 3' }]);
    // The VMM, untouched, still answers.
    expect(await rt.call(rt.vmm, () => rt.vmm.api.exec({ op: 'rmp_query', vm: 'a', gpa: 0 }))).toEqual({
      result: 'ok',
      value: { present: false },
    });
    const t0 = performance.now();
    await rt.shutdown();
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});

describe('the shipped vCPU worker', () => {
  it('has none of the test hooks: a call to one fails in the worker, which neither throws nor exits and lives on', async () => {
    const hooks = ['crash', 'exitNow', 'failNextRound'] as const;
    expect(hooks.filter((h) => h in VcpuWorker.prototype)).toEqual([]);
    const rt = await startRuntime(POLICY);
    await setupVm(rt, 'sw-protected', 1);
    const c = rt.vcpu('a', 0);
    for (const h of hooks) {
      const call = testHooks(c)[h] as unknown as (arg: unknown) => Promise<unknown>;
      await expect(rt.call(c, () => call(h === 'exitNow' ? 3 : 'boom'))).rejects.toThrow(/reading 'apply'/);
    }
    expect(rt.crashes).toEqual([]);
    expect(await c.api.exec({ op: 'guest_read', gpa: 0, len: 2 })).toEqual({ result: 'ok', value: '0000' });
  });
});

describe('a deliberate deadlock', () => {
  it('the watchdog ends the blocked wait with a LockTimeoutError naming the lock and its holder', async () => {
    const rt = await startRuntime(POLICY, { watchdogMs: 300 });
    await setupVm(rt, 'snp', 2);
    const [c0, c1] = [rt.vcpu('a', 0), rt.vcpu('a', 1)];
    const gpa = 0x4000;
    // vCPU 0 is held inside kvm_gmem_get_pfn with the new folio locked.
    const slot = rt.control.armPause(pointId('get_pfn.after_grab'), c0.tid);
    const r0 = rt.call(c0, () => c0.api.exec({ op: 'guest_read', gpa, len: 4 }));
    expect(await rt.control.whenHeld(slot, 5000)).toBe(c0.tid);
    // vCPU 1 faults the same page and sleeps on that folio lock until the watchdog fires.
    const t0 = performance.now();
    const err = await rt
      .call(c1, () => c1.api.exec({ op: 'guest_read', gpa, len: 4 }))
      .then(
        () => null,
        (e: Error) => e,
      );
    const waited = performance.now() - t0;
    expect(err).not.toBeNull();
    expect(err!.name).toBe('LockTimeoutError');
    expect(err!.message).toMatch(
      new RegExp(`^watchdog: thread ${c1.tid} waited \\d+ ms on folio lock of pfn \\d+, held by thread ${c0.tid}$`),
    );
    expect(waited).toBeGreaterThanOrEqual(300);
    expect(waited).toBeLessThan(10_000);
    // The watchdog is not a crash: both workers are alive, vCPU 0 still held.
    expect(rt.crashes).toEqual([]);
    expect(rt.control.pauseState(slot)).toBe('held');
    rt.control.release(slot);
    expect(await r0).toEqual({ result: 'vc', exit: 'vc' });
    // vCPU 1 works again once the lock is free: the page is mapped now (vCPU 0 installed it).
    expect(await rt.call(c1, () => c1.api.exec({ op: 'guest_read', gpa, len: 4 }))).toEqual({ result: 'vc', exit: 'vc' });
    expectOk(await rt.vmm.api.exec({ op: 'rmp_query', vm: 'a', gpa }));
    // The timed-out wait gave back the reference it took on the folio: everything balances.
    expectQuiescentAuditClean(rt);
    await expectTeardownAuditClean(rt);
    const t1 = performance.now();
    await rt.shutdown();
    expect(performance.now() - t1).toBeLessThan(5000);
  });

  it('with the watchdog off, the call timeout reports the hang with who waits on what', async () => {
    const rt = await startRuntime(POLICY, { watchdogMs: 0 }, 2000);
    await setupVm(rt, 'snp', 2);
    const [c0, c1] = [rt.vcpu('a', 0), rt.vcpu('a', 1)];
    const gpa = 0x4000;
    const slot = rt.control.armPause(pointId('get_pfn.after_grab'), c0.tid);
    // Straight through comlink: no call timeout on the held vCPU itself.
    const r0 = c0.api.exec({ op: 'guest_read', gpa, len: 4 });
    r0.catch(() => undefined);
    await rt.control.whenHeld(slot, 5000);
    const t0 = performance.now();
    const err = await rt
      .call(c1, () => c1.api.exec({ op: 'guest_read', gpa, len: 4 }))
      .then(
        () => null,
        (e: Error) => e,
      );
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(err?.name).toBe('WorkerCrashError');
    expect(err?.message).toMatch(
      new RegExp(`^vcpu 1 of vm a hung: no answer within 2000 ms; .*thread ${c1.tid} waits on folio lock of pfn \\d+`),
    );
    expect(rt.crashes).toHaveLength(1);
    expect(rt.crashes[0]).toMatchObject({ actor: 'vcpu 1 of vm a', kind: 'timeout' });
    // The timeout aborted every wait: the held vCPU is let go with an abort, and nothing hangs.
    expect(rt.control.abortReason()).toBe(AbortReason.TIMEOUT);
    await expect(r0).rejects.toThrow(/sandbox aborted \(no answer in time\) while waiting/);
    const t1 = performance.now();
    await rt.shutdown();
    expect(performance.now() - t1).toBeLessThan(5000);
  });
});
