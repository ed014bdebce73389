// Object lifetimes as the kernel has them, pinned with pause points on worker threads: kvm->srcu
// around faults and pre-fault (kvm_set_memslot waits in synchronize_srcu; 3ccbf6f47098 makes
// pre-fault return -EAGAIN), gmem file references (kvm_gmem_get_pfn's get_file, kvm_gmem_release as
// task work), the unbind of a dying file (a7800aa80ea4, fixed by ae431059e75d), a memslot update that
// drops KVM_MEM_GUEST_MEMFD (fixed by 9935df5333aa), and freed objects reported as KASAN would.

import { afterEach, describe, expect, it } from 'vitest';
import { Bug } from '../../src/gmem/bugs.js';
import type { KernelVersionName } from '../../src/gmem/version.js';
import { auditQuiescent } from '../../src/checker/audit.js';
import { Sandbox } from '../../src/vmm/sandbox/sandbox.js';
import { runScenario, type ScenarioReport } from '../../src/vmm/scenario/runner.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { KvmError } from '../../src/vmm/sandbox/errors.js';

const A0 = { vm: 'a', vcpu: 0 } as const;

/** VM 'a' (one vCPU) with guest_memfd 'g' bound by slot 0 over gpa 0..1MiB, all private. */
function setup(type: 'sw-protected' | 'snp'): unknown[] {
  const steps: unknown[] = [
    { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '1MiB', expect: 'ok' },
    {
      op: 'set_user_memory_region2',
      vm: 'a',
      slot: 0,
      flags: ['guest_memfd'],
      guest_phys_addr: 0,
      memory_size: '1MiB',
      guest_memfd: 'g',
      expect: 'ok',
    },
    { op: 'set_memory_attributes', vm: 'a', address: 0, size: '1MiB', attributes: 'private', expect: 'ok' },
  ];
  if (type === 'snp') steps.push({ op: 'snp_launch_start', vm: 'a', expect: 'ok' }, { op: 'snp_launch_finish', vm: 'a', expect: 'ok' });
  return steps;
}

async function run(
  kernel: KernelVersionName,
  type: 'sw-protected' | 'snp',
  steps: unknown[],
  opts: { bugs?: number; watchdogMs?: number } = {},
): Promise<ScenarioReport> {
  const s = parseScenario({
    kernel,
    memory: '4MiB',
    watchdog_ms: opts.watchdogMs ?? 5000,
    vms: [{ name: 'a', type, vcpus: 1 }],
    steps: [...setup(type), ...steps],
  });
  return runScenario(s, undefined, opts.bugs ? { bugs: opts.bugs } : {});
}

/** The report of the step whose note is `note`. */
function step(r: ScenarioReport, note: string, steps: unknown[]): ScenarioReport['steps'][number] {
  const i = steps.findIndex((s) => (s as { note?: string }).note === note);
  expect(i, note).toBeGreaterThanOrEqual(0);
  const st = r.steps.find((x) => x.index === String(i + (r.steps.length - steps.length)));
  expect(st, note).toBeDefined();
  return st!;
}

function expectPass(r: ScenarioReport): void {
  expect(
    r.steps.filter((s) => !s.pass),
    JSON.stringify(r.steps.filter((s) => !s.pass)),
  ).toEqual([]);
  expect(r.audit.violations).toEqual([]);
  expect(r.ok).toBe(true);
}

describe('memslot delete versus a fault in flight (kvm->srcu)', () => {
  /**
   * The fault is held inside its read section while the VMM deletes its memslot; the VMM is
   * held again once past the first grace period, before it zaps, so the guest's access, which
   * retries right after the fault, is pinned to come first (the kernel allows either order).
   */
  const heldFaultDelete = [
    { op: 'pause', point: 'fault.before_get_pfn', actor: A0 },
    { op: 'guest_read', ...A0, gpa: '0x3000', len: 4, note: 'held' },
    { op: 'await_held', point: 'fault.before_get_pfn' },
    { op: 'pause', point: 'memslot.between_publishes', actor: 'vmm' },
    {
      op: 'set_user_memory_region2',
      vm: 'a',
      slot: 0,
      flags: ['guest_memfd'],
      guest_phys_addr: 0,
      memory_size: 0,
      expect: 'ok',
      note: 'delete',
    },
    // The delete published the INVALID copy and waits in synchronize_srcu for the held fault.
    { op: 'await_held', point: 'memslot.between_publishes', timeout_ms: 300, expect: 'ETIMEDOUT' },
    { op: 'resume', point: 'fault.before_get_pfn', expect_value: { was_held: true } },
    // The fault left its read section: the grace period ends.
    { op: 'await_held', point: 'memslot.between_publishes', expect: 'ok' },
    { op: 'settle', expect: 'ok' },
    { op: 'resume', point: 'memslot.between_publishes' },
    { op: 'settle', expect: 'ok' },
  ];

  it('the delete waits in synchronize_srcu: the held fault completes on the old slot, and only the next access exits EFAULT', async () => {
    const steps = [
      ...structuredClone(heldFaultDelete),
      { op: 'guest_read', ...A0, gpa: '0x3000', len: 4, expect: 'memory_fault', expect_value: { errno: 'EFAULT', gpa: 0x3000, flags: 8 } },
    ];
    Object.assign(steps[1], { expect: 'ok', expect_value: '00000000' });
    expectPass(await run('6.11', 'sw-protected', steps));
  });

  it('a new slot that replaces the deleted one at the same GPA: the page is registered at its own GPA, with no RMP violation', async () => {
    const steps = [
      { op: 'create_guest_memfd', vm: 'a', as: 'h', size: '1MiB', expect: 'ok' },
      ...structuredClone(heldFaultDelete),
      {
        op: 'set_user_memory_region2',
        vm: 'a',
        slot: 1,
        flags: ['guest_memfd'],
        guest_phys_addr: 0,
        memory_size: '1MiB',
        guest_memfd: 'h',
        expect: 'ok',
      },
      { op: 'guest_read', ...A0, gpa: '0x3000', len: 4, expect: 'vc' },
      { op: 'pvalidate', ...A0, gpa: '0x3000', expect: 'ok', expect_value: 0 },
      { op: 'guest_read', ...A0, gpa: '0x3000', len: 4, expect: 'ok', expect_value: '00000000' },
      {
        op: 'rmp_query',
        vm: 'a',
        gpa: '0x3000',
        expect: 'ok',
        expect_value: { present: true, assigned: true, asid: 1, gpa: 0x3000, validated: true },
      },
    ];
    // The held fault prepared the old file's page for the guest, which has not validated it.
    Object.assign(steps[2], { expect: 'vc' });
    const r = await run('6.11', 'snp', steps);
    expectPass(r);
    expect(r.audit.counts.rmpAgreement).toBe(0);
  });
});

describe('KVM_PRE_FAULT_MEMORY versus a memslot delete', () => {
  const race = (extra: unknown[]): unknown[] => [
    { op: 'pause', point: 'fault.begin', actor: A0 },
    { op: 'pre_fault_memory', ...A0, gpa: 0, size: '16KiB', note: 'prefault' },
    { op: 'await_held', point: 'fault.begin' },
    { op: 'set_user_memory_region2', vm: 'a', slot: 0, flags: ['guest_memfd'], guest_phys_addr: 0, memory_size: 0, note: 'delete' },
    { op: 'resume', point: 'fault.begin' },
    ...extra,
  ];

  it('6.11: pre-fault retries on the INVALID slot while holding kvm->srcu; the watchdog reports the delete stuck in synchronize_srcu on its read section', async () => {
    const steps = race([]);
    const r = await run('6.11', 'sw-protected', steps, { watchdogMs: 400 });
    const del = step(r, 'delete', steps);
    expect(del.result).toBe('hang');
    expect(del.detail).toMatch(
      /waited \d+ ms on synchronize_srcu\(kvm->srcu of vm 0\): the read section of thread (\d+), held by reader thread \1 in a read section since grace period \d+/,
    );
    expect(r.audit.counts.liveness).toBe(1);
    expect(r.ok).toBe(false);
  });

  it('6.11: a signal is the way out: pre-fault returns EINTR and the delete finishes', async () => {
    const steps = race([{ op: 'signal', actor: A0 }]);
    (steps[1] as Record<string, unknown>).expect = 'EINTR';
    (steps[3] as Record<string, unknown>).expect = 'ok';
    expectPass(await run('6.11', 'sw-protected', steps, { watchdogMs: 4000 }));
  });

  it('6.18 (3ccbf6f47098): pre-fault gives up with EAGAIN and the delete finishes', async () => {
    const steps = race([]);
    Object.assign(steps[1] as object, { expect: 'EAGAIN', expect_value: { gpa: 0, size: 16384 } });
    (steps[3] as Record<string, unknown>).expect = 'ok';
    expectPass(await run('6.18', 'sw-protected', steps, { watchdogMs: 4000 }));
  });
});

describe('gmem file references', () => {
  it('close with a fault in flight: release waits for the fault`s file reference, then runs as its task work', async () => {
    const steps = [
      { op: 'guest_write', ...A0, gpa: '0x5000', data: 'aa', expect: 'ok' },
      { op: 'pause', point: 'get_pfn.after_get_file', actor: A0 },
      { op: 'guest_read', ...A0, gpa: '0x3000', len: 4, expect: 'memory_fault', expect_value: { errno: 'EFAULT', gpa: 0x3000 } },
      { op: 'await_held', point: 'get_pfn.after_get_file' },
      { op: 'close', fd: 'g', expect: 'ok' },
      // Not released yet: the memslot still reaches the file and its folios.
      { op: 'rmp_query', vm: 'a', gpa: '0x5000', expect: 'ok', expect_value: { present: true } },
      { op: 'resume', point: 'get_pfn.after_get_file' },
      { op: 'settle', expect: 'ok' },
      { op: 'rmp_query', vm: 'a', gpa: '0x5000', expect: 'ok', expect_value: { present: false } },
    ];
    expectPass(await run('6.11', 'sw-protected', steps));
  });

  const dyingUnbind = [
    { op: 'pause', point: 'get_pfn.after_get_file', actor: A0 },
    { op: 'guest_read', ...A0, gpa: '0x3000', len: 4, expect: 'memory_fault', expect_value: { errno: 'EFAULT' } },
    { op: 'await_held', point: 'get_pfn.after_get_file' },
    { op: 'close', fd: 'g', expect: 'ok' },
    { op: 'pause', point: 'fput.before_release', actor: A0 },
    { op: 'resume', point: 'get_pfn.after_get_file' },
    // The vCPU dropped the last reference: the file is dying, its release not yet run.
    { op: 'await_held', point: 'fput.before_release', expect: 'ok' },
    { op: 'set_user_memory_region2', vm: 'a', slot: 0, flags: ['guest_memfd'], guest_phys_addr: 0, memory_size: 0, expect: 'ok' },
    { op: 'resume', point: 'fput.before_release' },
  ];

  it('6.11 (a7800aa80ea4): a slot deleted while its file is dying keeps its binding, and release writes into the freed slot', async () => {
    const r = await run('6.11', 'sw-protected', dyingUnbind);
    expect(
      r.steps.every((s) => s.pass),
      JSON.stringify(r.steps),
    ).toBe(true);
    // The write that nulls slot->gmem.file, then kvm_gmem_invalidate_begin's read of slot->base_gfn.
    expect(r.audit.counts.useAfterFree).toBe(2);
    expect(r.audit.violations[0].detail).toMatch(
      /^KASAN: use-after-free in kvm_gmem_release: WRITE_ONCE\(slot->gmem.file, NULL\): memslot record \d+ of vm 0, handle of generation \d+, record now free/,
    );
    expect(r.audit.violations[1].detail).toMatch(
      /^KASAN: use-after-free in kvm_gmem_invalidate_begin: slot->base_gfn: memslot record \d+ of vm 0/,
    );
    expect(r.ok).toBe(false);
  });

  it('6.18 (ae431059e75d): the unbind of a dying file removes the binding; nothing is touched after free', async () => {
    expectPass(await run('6.18', 'sw-protected', dyingUnbind));
  });
});

describe('freed-object detection', () => {
  // A fault held inside its read section while the VMM deletes its memslot. The read may end
  // ok, or in an EFAULT exit if the zap beats the access's retry: both are the kernel's.
  const heldDelete = [
    { op: 'pause', point: 'fault.before_get_pfn', actor: A0 },
    { op: 'guest_read', ...A0, gpa: '0x3000', len: 4 },
    { op: 'await_held', point: 'fault.before_get_pfn' },
    { op: 'set_user_memory_region2', vm: 'a', slot: 0, flags: ['guest_memfd'], guest_phys_addr: 0, memory_size: 0, expect: 'ok' },
    { op: 'resume', point: 'fault.before_get_pfn' },
  ];

  it('a planted kvm_set_memslot without synchronize_srcu: the fault in flight uses the freed slot, reported as KASAN would', async () => {
    const r = await run('6.11', 'sw-protected', heldDelete, { bugs: Bug['memslot-update-skips-synchronize-srcu'] });
    expect(r.audit.counts.useAfterFree).toBe(1);
    expect(r.audit.violations[0]).toMatchObject({ invariant: 'useAfterFree', vm: 0 });
    expect(r.audit.violations[0].detail).toMatch(
      /^KASAN: use-after-free in kvm_gmem_get_pfn: slot->gmem: memslot record \d+ of vm 0, handle of generation \d+, record now free/,
    );
  });

  it('without the planted bug the same schedule is clean', async () => {
    expectPass(await run('6.11', 'sw-protected', heldDelete));
  });
});

describe('a memslot update that drops KVM_MEM_GUEST_MEMFD', () => {
  let sb: Sandbox | null = null;
  afterEach(async () => {
    await sb?.close();
    sb = null;
  });
  async function bound(kernel: KernelVersionName) {
    sb = await Sandbox.create({ kernel, memory: '4MiB', gpaSpace: '32MiB', userMemory: '8MiB', gmemSpace: '32MiB' });
    const vm = await sb.createVm({ type: 'sw-protected' });
    const gmem = await vm.createGuestMemfd({ size: '1MiB' });
    await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: '1MiB', guestMemfd: gmem });
    return { sb, vm, gmem };
  }

  for (const [change, gpa] of [
    ['flags-only', 0],
    ['move', 0x200000],
  ] as const) {
    it(`6.11: a ${change} change is accepted; the binding keeps the freed slot and release writes into it`, async () => {
      const { sb, vm, gmem } = await bound('6.11');
      await vm.setUserMemoryRegion2({ slot: 0, flags: [], guestPhysAddr: gpa, memorySize: '1MiB' });
      const dangling = auditQuiescent(sb.mem);
      expect(dangling.counts.useAfterFree).toBe(1);
      expect(dangling.violations[0].detail).toMatch(/^a binding of gmem file \d+ points at memslot record \d+ of vm 0, which was freed/);
      await gmem.close();
      const a = auditQuiescent(sb.mem);
      expect(a.violations.map((v) => v.detail)).toContainEqual(
        expect.stringMatching(/^KASAN: use-after-free in kvm_gmem_release: WRITE_ONCE\(slot->gmem.file, NULL\)/),
      );
    });

    it(`6.19 (9935df5333aa): the ${change} change is EINVAL and nothing changes`, async () => {
      const { sb, vm } = await bound('6.19');
      const err = await vm.setUserMemoryRegion2({ slot: 0, flags: [], guestPhysAddr: gpa, memorySize: '1MiB' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvmError);
      expect((err as KvmError).code).toBe('EINVAL');
      expect(auditQuiescent(sb.mem).counts.useAfterFree).toBe(0);
      expect(vm.backingPfn(0)).toBe(-1);
    });
  }
});
