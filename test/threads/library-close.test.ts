// Use after close: every method of the library's objects refuses with a SandboxClosedError once the
// sandbox is closed; a threaded runtime refuses calls after shutdown and settles the calls in flight;
// and a trace ring that fills counts the events it drops. The library's own contract: no kernel
// function is modelled here.

import { describe, expect, it, vi } from 'vitest';
import { GuestMemfd, Sandbox, SandboxClosedError, Vcpu, Vm } from '../../src/index.js';
import { Runtime } from '../../src/vmm/sandbox/runtime.js';

/** Resolves to how a promise settled, or 'pending' if it has not within `ms`. */
function settled(p: Promise<unknown>, ms = 3000): Promise<string> {
  return Promise.race([
    p.then(
      () => 'resolved',
      (e: Error) => `rejected ${e.name}: ${e.message}`,
    ),
    new Promise<string>((r) => setTimeout(() => r('pending'), ms)),
  ]);
}

/** Every method of a class's prototype (not the constructor). */
function methods(cls: { prototype: object }): string[] {
  return Object.getOwnPropertyNames(cls.prototype).filter(
    (n) => n !== 'constructor' && typeof Object.getOwnPropertyDescriptor(cls.prototype, n)?.value === 'function',
  );
}

describe('Sandbox after close', () => {
  it('every method of Sandbox, Vm, GuestMemfd and Vcpu throws (or rejects with) SandboxClosedError, and changes nothing', async () => {
    const sb = await Sandbox.create({ memory: '4MiB' });
    const vm = await sb.createVm({ type: 'snp' });
    const g = await vm.createGuestMemfd({ size: '1MiB' });
    const vcpu = await vm.createVcpu();
    const before = sb.freeHostPages();
    await sb.close();
    const objects: Array<[string, object, { prototype: object }]> = [
      ['Sandbox', sb, Sandbox],
      ['Vm', vm, Vm],
      ['GuestMemfd', g, GuestMemfd],
      ['Vcpu', vcpu, Vcpu],
    ];
    let checked = 0;
    for (const [name, obj, cls] of objects) {
      for (const m of methods(cls)) {
        if (name === 'Sandbox' && m === 'close') continue;
        let outcome: unknown;
        try {
          outcome = (obj as Record<string, (...a: unknown[]) => unknown>)[m](0, 0, 0);
        } catch (e) {
          outcome = e;
        }
        const err =
          outcome instanceof Promise
            ? await outcome.then(
                () => null,
                (e: unknown) => e,
              )
            : outcome;
        expect(err, `${name}.${m}`).toBeInstanceOf(SandboxClosedError);
        expect((err as SandboxClosedError).message).toBe(`${name}.${m}: the sandbox is closed`);
        checked++;
      }
    }
    // All four classes' methods, not a sample: a method added later is covered by construction.
    expect(checked).toBeGreaterThan(40);
    expect(sb.isClosed).toBe(true);
    // close() again is a no-op, not an error.
    await expect(sb.close()).resolves.toBeUndefined();
    expect(before).toBeGreaterThan(0);
  });
});

describe('Runtime after shutdown', () => {
  it('refuses new calls, settles calls in flight and calls made straight to a worker API', async () => {
    const rt = await Runtime.start({ sandbox: { memory: '4MiB' }, callTimeoutMs: 10_000 });
    await rt.createVms([{ name: 'a', type: 'snp', vcpus: 1 }]);
    const a = rt.vcpu('a', 0);
    // A call that would not answer for 30 s (a workload, which stops when asked) settles.
    const run = rt.call(
      a,
      () =>
        a.api.run({
          gfnStart: 0,
          gfnCount: 1,
          pattern: 'random',
          writeRatio: 0,
          hotRatio: 0,
          seed: 1,
          writerIndex: 0,
          writers: 1,
          durationMs: 30_000,
          maxAccesses: 0,
          multiVm: false,
        }),
      0,
    );
    await new Promise((r) => setTimeout(r, 200));
    const runSettled = settled(run);
    await rt.shutdown();
    expect(await runSettled).not.toBe('pending');
    expect(await settled(rt.call(rt.vmm, () => rt.vmm.api.createVms([])))).toBe(
      'rejected SandboxClosedError: Runtime.call(vmm): the runtime is shut down',
    );
    expect(await settled(rt.vmm.api.createVms([]))).toBe('rejected SandboxClosedError: worker vmm: the runtime is shut down');
    expect(await settled(a.api.exec({ op: 'guest_read', gpa: 0, len: 8 }))).toBe(
      'rejected SandboxClosedError: worker vcpu 0 of vm a: the runtime is shut down',
    );
    // A second shutdown is the same, finished one.
    await expect(rt.shutdown()).resolves.toBeUndefined();
    // No crash was reported for workers stopped on purpose.
    expect(rt.crashes).toEqual([]);
  });
});

describe('traces report dropped events', () => {
  it('a full ring counts what it drops: in the trace metadata and on stderr', async () => {
    const rt = await Runtime.start({ sandbox: { memory: '4MiB' }, trace: true, traceEvents: 4, callTimeoutMs: 10_000 });
    try {
      await rt.createVms([{ name: 'a', type: 'sw-protected', vcpus: 1 }]);
      await rt.call(rt.vmm, () => rt.vmm.api.exec({ op: 'create_guest_memfd', vm: 'a', as: 'g', size: 1 << 20 } as never));
      await rt.call(rt.vmm, () =>
        rt.vmm.api.exec({
          op: 'set_user_memory_region2',
          vm: 'a',
          slot: 0,
          flags: ['guest_memfd'],
          guest_phys_addr: 0,
          memory_size: 1 << 20,
          guest_memfd: 'g',
        } as never),
      );
      await rt.call(rt.vmm, () =>
        rt.vmm.api.exec({ op: 'set_memory_attributes', vm: 'a', address: 0, size: 1 << 20, attributes: 'private' } as never),
      );
      const a = rt.vcpu('a', 0);
      for (let p = 0; p < 20; p++) await rt.call(a, () => a.api.exec({ op: 'guest_read', gpa: p * 4096, len: 8, private: true }));
      const t = rt.chromeTrace('drops');
      expect(t.metadata.droppedByThread['vcpu 0 of vm a']).toBeGreaterThanOrEqual(16);
      expect(t.metadata.droppedEvents).toBe(Object.values(t.metadata.droppedByThread).reduce((x, y) => x + y, 0));
      const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      try {
        rt.writeTrace('/dev/null', 'drops');
        expect(String(err.mock.calls[0][0])).toMatch(
          /^gmem-sandbox: trace \/dev\/null: \d+ event\(s\) dropped, the per-thread ring was full \(.*vcpu 0 of vm a: \d+/,
        );
      } finally {
        err.mockRestore();
      }
    } finally {
      await rt.shutdown();
    }
  });
});
