// Shared setup for the threaded tests (concurrency, fault injection, scenarios, crash and hang):
// real worker threads on real shared memory, always shut down, with audit helpers.
// Workers run the BUILT code in dist/: run `npm run build` after a change in src/.

import { expect } from 'vitest';
import { Rmp } from '../../src/firmware/rmp.js';
import type { PolicyName } from '../../src/gmem/policy.js';
import type { VmTypeName } from '../../src/kvm/vm.js';
import { INVARIANTS, type Invariant } from '../../src/checker/violations.js';
import type { Outcome } from '../../src/vcpu-workers/outcome.js';
import { type AuditReport, auditQuiescent, auditTeardown } from '../../src/checker/audit.js';
import { Runtime, type RuntimeOptions } from '../../src/vmm/sandbox/runtime.js';
import type { Remote } from '../../src/shm/rpc.js';
import type { VcpuTestWorkerApi } from '../workers/vcpu-test-worker.js';

export const MiB = 1 << 20;
export const PAGE = 4096;
/** KVM_MEMORY_EXIT_FLAG_PRIVATE */
export const EXIT_FLAG_PRIVATE = 8;

/** The vCPU worker with test hooks (crash, exitNow, failNextRound), built into dist/ by `npm run build`. */
export const TEST_VCPU_WORKER = 'test/workers/vcpu-test-worker.js';

/** A vCPU actor's API with the test worker's hooks: only on a runtime started with vcpuWorker TEST_VCPU_WORKER. */
export function testHooks(a: { api: unknown }): Remote<VcpuTestWorkerApi> {
  return a.api as Remote<VcpuTestWorkerApi>;
}

/** Runtimes a test started; the afterEach of every file shuts them all down. */
export const live: Runtime[] = [];

export async function startRuntime(
  policy: PolicyName,
  opts: Partial<RuntimeOptions['sandbox']> = {},
  callTimeoutMs = 20_000,
  runtime: Pick<RuntimeOptions, 'vcpuWorker'> = {},
): Promise<Runtime> {
  const rt = await Runtime.start({ sandbox: { policy, memory: '16MiB', ...opts }, callTimeoutMs, ...runtime });
  live.push(rt);
  return rt;
}

export async function shutdownAll(): Promise<void> {
  await Promise.all(live.splice(0).map((rt) => rt.shutdown()));
}

export function expectOk(o: Outcome): Outcome {
  expect(o, JSON.stringify(o)).toMatchObject({ result: 'ok' });
  return o;
}

/**
 * VM 'a' of `type` with `vcpus` vCPU workers; guest_memfd 'g' of 1MiB bound at gpa 0 by slot 0,
 * all PRIVATE; an SNP VM is launched (LAUNCH_START + LAUNCH_FINISH) so guests may fault.
 */
export async function setupVm(rt: Runtime, type: VmTypeName, vcpus: number): Promise<void> {
  await rt.createVms([{ name: 'a', type, vcpus }]);
  const v = rt.vmm.api;
  expectOk(await v.exec({ op: 'create_guest_memfd', vm: 'a', as: 'g', size: MiB }));
  expectOk(
    await v.exec({
      op: 'set_user_memory_region2',
      vm: 'a',
      slot: 0,
      flags: ['guest_memfd'],
      guest_phys_addr: 0,
      memory_size: MiB,
      guest_memfd: 'g',
    }),
  );
  expectOk(await v.exec({ op: 'set_memory_attributes', vm: 'a', address: 0, size: MiB, attributes: 'private' }));
  if (type === 'snp') {
    expectOk(await v.exec({ op: 'snp_launch_start', vm: 'a' }));
    expectOk(await v.exec({ op: 'snp_launch_finish', vm: 'a' }));
  }
}

/** pfns whose RMP entry is guest-owned (assigned), with their ASID and gfn. */
export function assignedPfns(rt: Runtime): Array<{ pfn: number; asid: number; gfn: number }> {
  const rmp = new Rmp(rt.mem);
  const out: Array<{ pfn: number; asid: number; gfn: number }> = [];
  for (let pfn = 0; pfn < rmp.nrPfns; pfn++) if (rmp.assigned(pfn)) out.push({ pfn, asid: rmp.asid(pfn), gfn: rmp.gfn(pfn) });
  return out;
}

function zeroCounts(): Record<Invariant, number> {
  return Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<Invariant, number>;
}

function expectClean(a: AuditReport, what: string): void {
  expect(a.counts, `${what}: ${JSON.stringify(a.violations)}`).toEqual(zeroCounts());
}

/** The auditor's full check at a quiescent point (every worker idle): no invariant broken. */
export function expectQuiescentAuditClean(rt: Runtime): AuditReport {
  const a = auditQuiescent(rt.mem);
  expectClean(a, 'quiescent audit');
  return a;
}

/** Closes every guest_memfd on the VMM, then checks that everything went back (balance). */
export async function expectTeardownAuditClean(rt: Runtime): Promise<void> {
  await rt.call(rt.vmm, () => rt.vmm.api.closeAll());
  expectClean(auditTeardown(rt.mem), 'teardown audit');
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
