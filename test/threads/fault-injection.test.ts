// Fault injection on a threaded sandbox, each reported as the kernel would: a failing RMPUPDATE
// fails sev_gmem_prepare (an -EINVAL memory fault; the next access retries), a poisoned page exits
// -EHWPOISON (memory_failure -> kvm_gmem_error_folio), an exhausted allocator exits -ENOMEM, and a
// vCPU thread that dies mid-run is a crash report; no audited data is lost.

import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { subSeed } from '../../src/shm/prng.js';
import type { Runtime, VcpuActor } from '../../src/vmm/sandbox/runtime.js';
import { parseMix } from '../../src/vmm/workload/mix.js';
import { auditQuiescent } from '../../src/checker/audit.js';
import { Folios, PG_HWPOISON } from '../../src/gmem/folio.js';
import { Sptes, spteFrame } from '../../src/kvm/spte.js';
import {
  EXIT_FLAG_PRIVATE,
  PAGE,
  TEST_VCPU_WORKER,
  assignedPfns,
  expectQuiescentAuditClean,
  expectTeardownAuditClean,
  shutdownAll,
  startRuntime,
  testHooks,
} from '../helpers/runtime-helpers.js';

afterEach(shutdownAll);

const POLICY = 'prepare-on-fault-own-vm';

/** The stress layout (one SNP VM, `pages` private pages on one guest_memfd, launched) and its vCPUs. */
async function stressLayout(rt: Runtime, pages: number, vcpus: number, privateShare = 1): Promise<VcpuActor[]> {
  const layout = await rt.call(rt.vmm, () => rt.vmm.api.setupStress({ vmType: 'snp', vms: 1, pages, privateShare }));
  const out: VcpuActor[] = [];
  for (let c = 0; c < vcpus; c++) out.push(await rt.addVcpu('vm0', layout.vms[0], c));
  return out;
}

function memoryFault(gpa: number, errno: string): unknown {
  return { result: 'memory_fault', exit: 'memory_fault', value: { errno, gpa, size: PAGE, flags: EXIT_FLAG_PRIVATE } };
}

/** Faults, PVALIDATEs and writes `data` to a fresh private page, then reads it back. */
async function ownPage(c: VcpuActor, gpa: number, data: string): Promise<void> {
  expect(await c.api.exec({ op: 'guest_read', gpa, len: 4 })).toEqual({ result: 'vc', exit: 'vc' });
  expect(await c.api.exec({ op: 'pvalidate', gpa })).toEqual({ result: 'ok', value: 0 });
  expect(await c.api.exec({ op: 'guest_write', gpa, data })).toEqual({ result: 'ok' });
  expect(await c.api.exec({ op: 'guest_read', gpa, len: data.length / 2 })).toEqual({ result: 'ok', value: data });
}

function delta(
  rt: Runtime,
  before: ReturnType<Runtime['stats']>,
  keys: ReadonlyArray<keyof ReturnType<Runtime['stats']>>,
): Record<string, number> {
  const now = rt.stats();
  return Object.fromEntries(keys.map((k) => [k, now[k] - before[k]]));
}

describe('fault injection', () => {
  it('a failing RMPUPDATE fails the prepare (memory fault, EINVAL); the next access retries and succeeds', async () => {
    const rt = await startRuntime(POLICY);
    const [c] = await stressLayout(rt, 64, 1);
    await ownPage(c, 0x1000, 'cafef00d');
    const before = rt.stats();
    await rt.vmm.api.injectFirmwareFailures('RMPUPDATE', 1);
    expect(await c.api.exec({ op: 'guest_read', gpa: 0x5000, len: 4 })).toEqual(memoryFault(0x5000, 'EINVAL'));
    // The folio was allocated and cleared but not marked prepared; nothing was mapped or assigned.
    expect(delta(rt, before, ['foliosAllocated', 'clears', 'archPrepareCalls', 'prepares', 'sptesInstalled', 'memoryFaultExits'])).toEqual({
      foliosAllocated: 1,
      clears: 1,
      archPrepareCalls: 1,
      prepares: 0,
      sptesInstalled: 0,
      memoryFaultExits: 1,
    });
    expect(assignedPfns(rt).map((e) => e.gfn)).toEqual([1]);
    expectQuiescentAuditClean(rt);
    // The injection was one-shot: the same access now prepares the same folio and maps it.
    expect(await c.api.exec({ op: 'guest_read', gpa: 0x5000, len: 4 })).toEqual({ result: 'vc', exit: 'vc' });
    expect(await c.api.exec({ op: 'pvalidate', gpa: 0x5000 })).toEqual({ result: 'ok', value: 0 });
    expect(await c.api.exec({ op: 'guest_read', gpa: 0x5000, len: 4 })).toEqual({ result: 'ok', value: '00000000' });
    expect(delta(rt, before, ['foliosAllocated', 'archPrepareCalls', 'prepares', 'sptesInstalled'])).toEqual({
      foliosAllocated: 1,
      archPrepareCalls: 2,
      prepares: 1,
      sptesInstalled: 1,
    });
    expect(
      assignedPfns(rt)
        .map((e) => e.gfn)
        .sort((a, b) => a - b),
    ).toEqual([1, 5]);
    // Data written before the injection is intact.
    expect(await c.api.exec({ op: 'guest_read', gpa: 0x1000, len: 4 })).toEqual({ result: 'ok', value: 'cafef00d' });
    expectQuiescentAuditClean(rt);
    // What a memory_failure that skipped the zap would leave: the auditor names the mapping.
    const pfn = spteFrame(new Sptes(rt.mem).get(c.vm, 1));
    const folios = new Folios(rt.mem);
    folios.set(pfn, PG_HWPOISON);
    expect(auditQuiescent(rt.mem).violations.map((v) => v.detail)).toEqual([`SPTE maps pfn ${pfn}, which is hwpoisoned`]);
    folios.clear(pfn, PG_HWPOISON);
    await expectTeardownAuditClean(rt);
  });

  it('a hwpoisoned page: the next access exits with EHWPOISON; other pages keep their data', async () => {
    const rt = await startRuntime(POLICY);
    const [c] = await stressLayout(rt, 64, 1);
    await ownPage(c, 0x1000, 'cafef00d');
    await ownPage(c, 0x3000, 'abad1dea');
    // No folio at that offset yet: memory_failure finds nothing to poison.
    expect(await rt.vmm.api.hwpoisonOffset(0x9000)).toMatchObject({ result: 'ENOENT' });
    const before = rt.stats();
    expect(await rt.vmm.api.hwpoisonOffset(0x3000)).toEqual({ result: 'ok' });
    // kvm_gmem_error_folio zapped the mapping: the guest faults, and get_pfn refuses the folio.
    expect(await c.api.exec({ op: 'guest_read', gpa: 0x3000, len: 4 })).toEqual(memoryFault(0x3000, 'EHWPOISON'));
    expect(await c.api.exec({ op: 'guest_write', gpa: 0x3000, data: '00' })).toEqual(memoryFault(0x3000, 'EHWPOISON'));
    expect(delta(rt, before, ['sptesZapped', 'faults', 'sptesInstalled', 'foliosAllocated', 'memoryFaultExits'])).toEqual({
      sptesZapped: 1,
      faults: 2,
      sptesInstalled: 0,
      foliosAllocated: 0,
      memoryFaultExits: 2,
    });
    expect(await c.api.exec({ op: 'guest_read', gpa: 0x1000, len: 4 })).toEqual({ result: 'ok', value: 'cafef00d' });
    expectQuiescentAuditClean(rt);
    await expectTeardownAuditClean(rt);
  });

  it('an exhausted allocator: a fresh page exits with ENOMEM, mapped pages still work, and service resumes', async () => {
    const rt = await startRuntime(POLICY);
    const [c] = await stressLayout(rt, 64, 1);
    await ownPage(c, 0x1000, 'cafef00d');
    const before = rt.stats();
    await rt.vmm.api.reserveHostPages(1 << 30);
    expect(await c.api.exec({ op: 'guest_read', gpa: 0x7000, len: 4 })).toEqual(memoryFault(0x7000, 'ENOMEM'));
    expect(await c.api.exec({ op: 'pre_fault_memory', gpa: 0x8000, size: PAGE })).toEqual({
      result: 'ENOMEM',
      value: { gpa: 0x8000, size: PAGE, flags: 0 },
    });
    expect(await c.api.exec({ op: 'guest_read', gpa: 0x1000, len: 4 })).toEqual({ result: 'ok', value: 'cafef00d' });
    expect(delta(rt, before, ['foliosAllocated', 'archPrepareCalls', 'sptesInstalled'])).toEqual({
      foliosAllocated: 0,
      archPrepareCalls: 0,
      sptesInstalled: 0,
    });
    expectQuiescentAuditClean(rt);
    await rt.vmm.api.reserveHostPages(0);
    expect(await c.api.exec({ op: 'guest_read', gpa: 0x7000, len: 4 })).toEqual({ result: 'vc', exit: 'vc' });
    expect(delta(rt, before, ['foliosAllocated', 'archPrepareCalls', 'sptesInstalled'])).toEqual({
      foliosAllocated: 1,
      archPrepareCalls: 1,
      sptesInstalled: 1,
    });
    expect(await c.api.exec({ op: 'guest_read', gpa: 0x1000, len: 4 })).toEqual({ result: 'ok', value: 'cafef00d' });
    expectQuiescentAuditClean(rt);
    await expectTeardownAuditClean(rt);
  });
});

describe('a vCPU thread that dies during a stress run', () => {
  const PAGES = 256;
  const workload = (a: VcpuActor, durationMs: number, writers: number) => ({
    gfnStart: 0,
    gfnCount: PAGES,
    pattern: 'random' as const,
    writeRatio: 0.3,
    hotRatio: 0.8,
    seed: subSeed(7, a.index + 1),
    writerIndex: a.index,
    writers,
    durationMs,
    maxAccesses: 0,
    multiVm: false,
  });

  async function startStress(rt: Runtime): Promise<{ vcpus: VcpuActor[]; vmmRun: Promise<unknown> }> {
    const vcpus = await stressLayout(rt, PAGES, 2, 0.75);
    const vmmRun = rt.call(rt.vmm, () =>
      rt.vmm.api.runOps({
        mix: parseMix('punch=3,fallocate=1,convert=2,prefault=1'),
        rate: 2000,
        maxPages: 16,
        seed: 7,
        durationMs: 1000,
        maxOps: 0,
      }),
    );
    vmmRun.catch(() => undefined);
    return { vcpus, vmmRun };
  }

  /**
   * The crash aborts every wait (Runtime.watch), so a survivor may unwind out of an operation with
   * a lock still held: the auditor's 'balance' checks then report those locks. Every check on the
   * data itself must still pass: the guests' online checks and the auditor's other invariants.
   * A thread `killed` outright may die anywhere, which no kernel task does: holding its pcp list's
   * lock, or between taking a pfn off a free list and installing it. Any 'balance' report is then
   * its doing; a thread that exits between calls leaves only the survivors' locks.
   */
  function expectNoDataViolations(rt: Runtime, killed: boolean): void {
    const s = rt.stats();
    expect({
      staleData: s['violation.staleData'],
      dataLost: s['violation.dataLost'],
      rmpAgreement: s['violation.rmpAgreement'],
      hostIsolation: s['violation.hostIsolation'],
      useAfterFree: s['violation.useAfterFree'],
      hostRmpFaults: s.hostRmpFaults,
    }).toEqual({ staleData: 0, dataLost: 0, rmpAgreement: 0, hostIsolation: 0, useAfterFree: 0, hostRmpFaults: 0 });
    const a = auditQuiescent(rt.mem);
    const { balance: _held, liveness: _l, ...data } = a.counts;
    expect(data, JSON.stringify(a.violations)).toEqual({
      staleData: 0,
      rmpAgreement: 0,
      hostIsolation: 0,
      useAfterFree: 0,
      dataLost: 0,
      lockOrder: 0,
      assertion: 0,
      launchState: 0,
    });
    for (const v of a.violations) {
      expect(['balance', 'liveness']).toContain(v.invariant);
      if (!killed) expect(v.detail).toMatch(/held at a quiescent point|refcount \d+ at a quiescent point|mmu_invalidate_in_progress/);
    }
  }

  /** Every other call ends by itself (finishes, or rejects with the abort) within 5 s of `t0`. */
  async function othersEnd(t0: number, calls: Array<Promise<unknown>>): Promise<void> {
    const settled = await Promise.allSettled(calls);
    expect(performance.now() - t0).toBeLessThan(5000);
    for (const s of settled) {
      if (s.status === 'rejected') expect(String(s.reason)).toMatch(/SyncAbortError: sandbox aborted \(a worker died\) while waiting/);
      else expect((s.value as { violations?: unknown[] }).violations ?? []).toEqual([]);
    }
  }

  it('exits (process.exit inside the worker) while the others run: reported, nothing hangs, no data lost', async () => {
    const rt = await startRuntime(POLICY, {}, undefined, { vcpuWorker: TEST_VCPU_WORKER });
    const { vcpus, vmmRun } = await startStress(rt);
    const [survivor, victim] = vcpus;
    const t0 = performance.now();
    const survivorRun = rt.call(survivor, () => survivor.api.run(workload(survivor, 1000, 2)));
    survivorRun.catch(() => undefined);
    // A worker serves one call at a time: exitNow runs right after the victim's 300 ms run,
    // while the survivor and the VMM are in the middle of theirs.
    const victimRun = rt.call(victim, () => victim.api.run(workload(victim, 300, 2)));
    victimRun.catch(() => undefined);
    const exit = rt.call(victim, () => testHooks(victim).exitNow(9));
    await expect(exit).rejects.toThrow('vcpu 1 of vm vm0 exited: thread exited with code 9');
    expect(rt.crashes).toEqual([{ actor: 'vcpu 1 of vm vm0', kind: 'exit', message: 'thread exited with code 9' }]);
    // The run's answer races the exit: it arrives, clean, or the call reports the exit.
    const [v] = await Promise.allSettled([victimRun]);
    if (v.status === 'fulfilled') {
      expect(v.value.accesses).toBeGreaterThan(0);
      expect(v.value.violations).toEqual([]);
    } else {
      expect(String(v.reason)).toContain('thread exited with code 9');
    }
    await othersEnd(t0, [survivorRun, vmmRun]);
    expectNoDataViolations(rt, false);
    const t1 = performance.now();
    await rt.shutdown();
    expect(performance.now() - t1).toBeLessThan(5000);
  });

  it('is killed outright mid-access: reported as an exit, the others end, shutdown is prompt', async () => {
    const rt = await startRuntime(POLICY);
    const { vcpus, vmmRun } = await startStress(rt);
    const victim = vcpus[1];
    const t0 = performance.now();
    const runs = vcpus.map((a) => rt.call(a, () => a.api.run(workload(a, 1000, 2))));
    for (const r of runs) r.catch(() => undefined);
    // Mid-access: once the guests fault.
    for (const end = Date.now() + 5000; rt.stats().faults === 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 5));
    expect(rt.stats().faults).toBeGreaterThan(0);
    // The thread dies wherever it is, as under kill -9 (Worker.prototype.terminate, not the
    // runtime's own terminate, which marks a deliberate exit).
    await Worker.prototype.terminate.call(victim.worker);
    await expect(runs[1]).rejects.toThrow(/^vcpu 1 of vm vm0 exited: thread exited with code 1$/);
    expect(rt.crashes).toEqual([{ actor: 'vcpu 1 of vm vm0', kind: 'exit', message: 'thread exited with code 1' }]);
    await othersEnd(t0, [runs[0], vmmRun]);
    expectNoDataViolations(rt, true);
    const t1 = performance.now();
    await rt.shutdown();
    expect(performance.now() - t1).toBeLessThan(5000);
  });
});
