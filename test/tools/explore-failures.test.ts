// Every explorer failure is a schedule that replays. A wait nobody can end, while others wait on
// what the sleeper holds, is a deadlock at its schedule: the fault's retry wait and pre-fault's
// spin (kvm_mmu_do_page_fault's RET_PF_RETRY, kvm_tdp_map_page) with mmu_lock kept, an SRCU read
// section a memslot update's synchronize_srcu waits for, and a lock kept on the return to user
// space (what lockdep_sys_exit warns about), which the teardown then waits for. A hang only the
// round watchdog ends carries its seed and the choices made up to it, and hangs again at the same
// point when replayed (`replay` says reproduced). A model assertion in any actor (fput's refcount
// underflow in the leading VMM thread's teardown, a WARN in a vCPU) is a violation with its
// stack, saved, replayed and shrunk. The test vCPU worker (test/workers/vcpu-test-worker.ts)
// plants each misbehaviour from outside the kernel code.

import { existsSync, readFileSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { UPSTREAM } from '../../src/gmem/version.js';
import { exploreCommand, replayCommand } from '../../src/cli/explore.js';
import type { ExploreCliOptions } from '../../src/cli/explore-search.js';
import { type ExploreConfig, Explorer, ScheduleHangError, type ScheduleResult, workloadFor } from '../../src/vmm/explore/explorer.js';
import type { VcpuActor } from '../../src/vmm/sandbox/runtime.js';
import { TEST_VCPU_WORKER, testHooks } from '../helpers/runtime-helpers.js';
import { tempDir } from '../helpers/cli-helpers.js';
import type { Misbehaviour } from '../workers/vcpu-test-worker.js';

/** What the test vCPU worker reads at its start (MISBEHAVE_ENV there): importing that file would run it. */
const MISBEHAVE_ENV = 'GMEM_SANDBOX_TEST_VCPU_MISBEHAVE';

const explorers: Explorer[] = [];
afterAll(async () => {
  await Promise.all(explorers.map((e) => e.close()));
});
afterEach(() => {
  delete process.env[MISBEHAVE_ENV];
  vi.restoreAllMocks();
});

function config(over: Partial<ExploreConfig['workload']> = {}, timeoutMs = 20_000): ExploreConfig {
  return {
    kernel: UPSTREAM,
    bug: null,
    strategy: 'random',
    depth: 3,
    maxSteps: 20_000,
    workload: workloadFor(null, over),
    scheduleTimeoutMs: timeoutMs,
  };
}

/** An explorer on the test vCPU worker whose vCPU 0 misbehaves so in every schedule. */
async function misbehaving(m: Misbehaviour, cfg: ExploreConfig): Promise<Explorer> {
  const e = new Explorer(cfg, { vcpuWorker: TEST_VCPU_WORKER });
  explorers.push(e);
  await e.runSchedule(1);
  await testHooks((e as unknown as { runners: VcpuActor[] }).runners[0]).misbehave(m);
  return e;
}

/** Runs `gmem-sandbox explore --json` in this process on the test vCPU worker: its exit status and JSON. */
async function exploreJson(o: Partial<ExploreCliOptions>): Promise<{ status: number; json: { results: Array<Record<string, unknown>> } }> {
  let out = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  const status = await exploreCommand(
    { schedules: 16, strategy: 'random', depth: 3, seed: 1, kernel: 'upstream', out: tempDir(), json: true, shrink: true, ...o },
    undefined,
    { vcpuWorker: TEST_VCPU_WORKER },
  );
  vi.restoreAllMocks();
  return { status, json: JSON.parse(out) };
}

/** Runs `gmem-sandbox replay FILE --json` in this process on the test vCPU worker: its exit status and JSON. */
async function replayJson(file: string): Promise<{ status: number; json: Record<string, unknown> }> {
  let out = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  const status = await replayCommand(file, { json: true }, undefined, { vcpuWorker: TEST_VCPU_WORKER });
  vi.restoreAllMocks();
  return { status, json: JSON.parse(out) };
}

describe('a wait nobody can end is a deadlock at its schedule, named and replayable', () => {
  it.each([
    [
      'retry-wait-holding-mmu-lock',
      3,
      {},
      /^deadlock: no actor can run: vmm waits on mmu_lock of vm 0 \(state 1\); vcpu 0 \(vm 0\) waits on mmu_invalidate_seq of vm 0 \(value 1\); vmm 2 waits on slots_lock of vm 0 \(held by vmm\)$/,
    ],
    [
      'spin-holding-mmu-lock',
      3,
      {},
      /^deadlock: no actor can run: vmm waits on mmu_lock of vm 0 \(state 1\); vcpu 0 \(vm 0\) waits on the memslot generation of vm 0 \(a fault retrying on an INVALID slot waits for the next publish\) \(value 2\) or a signal; vmm 2 waits on slots_lock of vm 0 \(held by vmm\)$/,
    ],
    [
      'retry-wait-in-srcu',
      2,
      { ops: 'memslot=1', vmmOps: 2 },
      /vmm 2 waits on synchronize_srcu\(kvm->srcu of vm 0\): the read section of thread \d+ \(held by vcpu 0 \(vm 0\)\)/,
    ],
    [
      'exit-holding-mmu-lock',
      2,
      {},
      /^deadlock: no actor can run: vmm waits on mmu_lock of vm 0 \(state 1; vcpu 0 \(vm 0\) returned to user space holding it\)$/,
    ],
  ] as const)('%s (seed %i)', async (m, seed, over, detail) => {
    const e = await misbehaving(m, config(over));
    const [r] = await e.runSchedules([seed]);
    expect(r.outcome).toBe('deadlock');
    expect(r.violations[0]).toMatchObject({ invariant: 'liveness', by: 'scheduler' });
    expect(r.violations[0].detail).toMatch(detail);
    const again = await e.runSchedule(r.seed, r.choices);
    expect(again.outcome).toBe('deadlock');
    expect(again.violations).toEqual(r.violations);
    expect(again.choices.slice(0, r.choices.length)).toEqual(r.choices);
  });

  it('a lock kept on the return to user space: explore saves, shrinks and prints it as JSON', async () => {
    process.env[MISBEHAVE_ENV] = 'exit-holding-mmu-lock@0';
    const { status, json } = await exploreJson({});
    expect(status).toBe(1);
    const res = json.results[0];
    expect(res).toMatchObject({ found: true, seed: 1, schedules: 1 });
    expect(res.violation).toMatch(
      /^liveness: deadlock: no actor can run: vmm waits on mmu_lock of vm 0 \(state 1; vcpu 0 \(vm 0\) returned/,
    );
    const saved = JSON.parse(readFileSync(res.saved as string, 'utf8'));
    expect(saved).toMatchObject({ seed: 1, outcome: 'deadlock' });
    const shrunk = res.shrunk as { saved: string };
    expect(JSON.parse(readFileSync(shrunk.saved, 'utf8')).outcome).toBe('deadlock');
  }, 60_000);
});

describe('a hang the round watchdog ends carries its seed and the choices made so far', () => {
  it('the schedule of seed 2 hangs 36 steps in, and its choices replay to the same hang', async () => {
    const e = await misbehaving('hang-at-point-10', config({}, 1500));
    const err = await e.runSchedules([2, 3]).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ScheduleHangError);
    const { result, index } = err as ScheduleHangError;
    expect(index).toBe(0);
    expect(result).toMatchObject({ seed: 2, outcome: 'hang', steps: result.choices.length });
    expect(result.choices.length).toBe(36);
    expect(result.violations[0].detail).toMatch(
      /^hang: no schedule of the batch finished within 1500 ms; .*vcpu 0 \(vm 0\) was running and never reached its next scheduling point$/,
    );
    await e.close();
    const again = await misbehaving('hang-at-point-10', config({}, 1500));
    const err2 = (await again.runSchedule(2, result.choices).catch((x: unknown) => x)) as ScheduleHangError;
    expect(err2).toBeInstanceOf(ScheduleHangError);
    expect(err2.result.choices).toEqual(result.choices);
  }, 60_000);

  it('explore --json prints the hang as a found schedule, saved as far as it went', async () => {
    process.env[MISBEHAVE_ENV] = 'hang-at-point-10@0';
    const { status, json } = await exploreJson({ scheduleTimeoutMs: 1500 });
    expect(status).toBe(1);
    const res = json.results[0];
    expect(res).toMatchObject({ found: true, seed: 1, schedules: 1 });
    expect(res.violation).toMatch(/^liveness: hang: no schedule of the batch finished within 1500 ms; /);
    expect(res.shrunk).toBeUndefined();
    const saved = JSON.parse(readFileSync(res.saved as string, 'utf8'));
    expect(saved).toMatchObject({ seed: 1, outcome: 'hang', config: { scheduleTimeoutMs: 1500 } });
    expect(saved.choices.length).toBe(res.steps);
    expect(saved.choices.length).toBeGreaterThan(0);
    // `replay` runs the saved choices and hangs at the same point again: reproduced.
    process.env[MISBEHAVE_ENV] = 'hang-at-point-10@0';
    const replayed = await replayJson(res.saved as string);
    expect(replayed.status).toBe(0);
    expect(replayed.json).toMatchObject({ reproduced: true, outcome: 'hang', steps: saved.choices.length });
  }, 60_000);
});

describe('a model assertion in any actor is a finding', () => {
  it("fput's refcount underflow in the leader's teardown: a violation with its stack, replayed and shrunk", async () => {
    const e = await misbehaving('extra-fput', config());
    const [r] = await e.runSchedules([2]);
    expect(r.outcome).toBe('violation');
    expect(r.violations[0]).toMatchObject({
      invariant: 'assertion',
      by: 'vmm (teardown)',
      detail: 'Error: fput: gmem file 0 refcount underflow',
    });
    expect(r.violations[0].stack).toMatch(/at gmemFput \(/);
    const again = await e.runSchedule(r.seed, r.choices);
    expect(again.violations).toEqual(r.violations);
    const shrunk: ScheduleResult = await e.shrink(r, 40);
    expect(shrunk.violations[0]).toMatchObject({ invariant: 'assertion', detail: 'Error: fput: gmem file 0 refcount underflow' });
  }, 60_000);

  it("a vCPU's assertion at its 10th scheduling point: the run ends at that step, replays, shrinks, and the explorer goes on", async () => {
    const e = await misbehaving('warn-at-point-10', config());
    const [r] = await e.runSchedules([2, 3]);
    expect(r).toMatchObject({ seed: 2, outcome: 'violation', steps: 36 });
    expect(r.violations).toHaveLength(1);
    expect(r.violations[0]).toMatchObject({
      invariant: 'assertion',
      by: 'vcpu 0 (vm 0)',
      detail: 'Error: WARN_ON: planted at scheduling point 10',
    });
    expect(r.violations[0].stack).toMatch(/at ControlledSync\.yieldNow \(/);
    const again = await e.runSchedule(r.seed, r.choices);
    expect(again).toMatchObject({ outcome: 'violation', steps: 36, violations: r.violations });
    const shrunk = await e.shrink(r, 30);
    expect(shrunk.violations[0]).toMatchObject({ invariant: 'assertion', by: 'vcpu 0 (vm 0)' });
    const [next] = await e.runSchedules([4]);
    expect(next).toMatchObject({ seed: 4, outcome: 'violation' });
  }, 60_000);

  it('explore saves it, and its JSON names the assertion', async () => {
    process.env[MISBEHAVE_ENV] = 'extra-fput@0';
    const { status, json } = await exploreJson({ shrink: false });
    expect(status).toBe(1);
    const res = json.results[0];
    expect(res).toMatchObject({ found: true, seed: 1, violation: 'assertion: Error: fput: gmem file 0 refcount underflow' });
    expect(existsSync(res.saved as string)).toBe(true);
    const saved = JSON.parse(readFileSync(res.saved as string, 'utf8'));
    expect(saved.violations[0]).toMatchObject({ invariant: 'assertion', by: 'vmm (teardown)' });
    expect(saved.violations[0].stack).toMatch(/refcount underflow/);
    process.env[MISBEHAVE_ENV] = 'extra-fput@0';
    const replayed = await replayJson(res.saved as string);
    expect(replayed.status).toBe(0);
    expect(replayed.json).toMatchObject({ reproduced: true, outcome: 'violation' });
  }, 60_000);
});
