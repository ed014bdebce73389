// Issue 9 / item 5: SNP launch state. An SNP vCPU cannot run before LAUNCH_FINISH (VMRUN fails:
// KVM_EXIT_FAIL_ENTRY), pre-fault stays EOPNOTSUPP, LAUNCH_START does not look at the RMP, and
// every SEV ioctl runs under kvm->lock, outside slots_lock.

import { afterEach, describe, expect, it } from 'vitest';
import { wordDescriber } from '../../src/firmware/describe.js';
import { Vms } from '../../src/kvm/vm.js';
import { pointId } from '../../src/shm/points.js';
import { OWNER_MASK } from '../../src/shm/sync/words.js';
import { TID_VMM } from '../../src/vmm/sandbox/runtime.js';
import { RunControl } from '../../src/vcpu-workers/runctl.js';
import { runWorkload } from '../../src/vcpu-workers/guest-workload.js';
import { runScenario } from '../../src/vmm/scenario/runner.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { MiB, PAGE_SIZE, image, setupVm, statsDelta } from '../helpers/helpers.js';
import { expectOk, shutdownAll, startRuntime } from '../helpers/runtime-helpers.js';

afterEach(shutdownAll);

const FAIL_ENTRY = { ok: false, exit: 'fail_entry' };

describe('an SNP vCPU before LAUNCH_FINISH cannot enter the guest (KVM_EXIT_FAIL_ENTRY)', () => {
  for (const launch of ['none', 'started'] as const) {
    it(`launch ${launch}: reads, writes and PVALIDATE exit fail_entry; nothing is faulted, allocated or registered`, async () => {
      const { sb, vm, gmem, vcpu } = await setupVm({ type: 'snp', launch });
      const d = await statsDelta(sb, ['faults', 'foliosAllocated', 'rmpUpdates', 'pvalidates', 'guestReads', 'guestWrites'], async () => {
        expect(await vcpu.read(0x1000, 4)).toEqual(FAIL_ENTRY);
        expect(await vcpu.write(0x1000, new Uint8Array([1]))).toEqual(FAIL_ENTRY);
        expect(await vcpu.pvalidate(0x1000)).toEqual(FAIL_ENTRY);
        expect(await vcpu.read(0x1000, 4, { private: false })).toEqual(FAIL_ENTRY);
      });
      expect(d).toEqual({ faults: 0, foliosAllocated: 0, rmpUpdates: 0, pvalidates: 0, guestReads: 0, guestWrites: 0 });
      expect(gmem.folioAt(0x1000)).toBeNull();
      expect(vm.rmpQuery(0x1000)).toEqual({ present: false });
      // KVM_PRE_FAULT_MEMORY keeps its own answer before LAUNCH_FINISH.
      await expect(vcpu.preFaultMemory({ gpa: 0, size: PAGE_SIZE })).rejects.toMatchObject({ code: 'EOPNOTSUPP', errno: 95 });
    });
  }

  it('after LAUNCH_FINISH the same vCPU runs: a fresh private page is #VC, PVALIDATE works, the populated page reads back', async () => {
    const { vm, vcpu } = await setupVm({ type: 'snp', launch: 'started' });
    await vm.snpLaunchUpdate({ gpa: 0, data: image(1) });
    expect(await vcpu.read(0, 4)).toEqual(FAIL_ENTRY);
    await vm.snpLaunchFinish();
    expect(await vcpu.read(0, 4)).toEqual({ ok: true, data: image(1).subarray(0, 4) });
    expect(await vcpu.read(0x1000, 4)).toEqual({ ok: false, exit: 'vc' });
    expect(await vcpu.pvalidate(0x1000)).toEqual({ ok: true, code: 0 });
    expect(await vcpu.read(0x1000, 4)).toEqual({ ok: true, data: new Uint8Array(4) });
  });

  it('a failed LAUNCH_FINISH leaves the vCPU unable to enter', async () => {
    const { sb, vm, vcpu } = await setupVm({ type: 'snp', launch: 'started' });
    sb.injectFirmwareFailures('LAUNCH_FINISH');
    await expect(vm.snpLaunchFinish()).rejects.toMatchObject({ code: 'EIO' });
    expect(await vcpu.read(0x1000, 4)).toEqual(FAIL_ENTRY);
  });

  it('a guest workload on an SNP vCPU before LAUNCH_FINISH runs nothing: one fail_entry exit', async () => {
    const { sb, vcpu } = await setupVm({ type: 'snp', launch: 'started' });
    const cfg = {
      gfnStart: 0,
      gfnCount: 16,
      pattern: 'random' as const,
      writeRatio: 0.5,
      hotRatio: 0,
      seed: 1,
      writerIndex: 0,
      writers: 1,
      durationMs: 0,
      maxAccesses: 100,
      multiVm: false,
    };
    const r = runWorkload(vcpu.cpu, new RunControl(sb.mem), cfg);
    expect(r).toMatchObject({ accesses: 0, exits: { fail_entry: 1, memory_fault: 0, vc: 0 }, violationCount: 0 });
    expect(sb.stats().faults).toBe(0);
  });

  it('a sw-protected VM has no launch: its vCPU runs at once', async () => {
    const { vcpu } = await setupVm({ type: 'sw-protected' });
    expect(await vcpu.read(0x1000, 4)).toEqual({ ok: true, data: new Uint8Array(4) });
  });

  it('on a vCPU thread, and in a scenario: outcome fail_entry with hardware_entry_failure_reason SVM_EXIT_ERR', async () => {
    const r = await runScenario(
      parseScenario({
        policy: 'prepare-on-fault-own-vm',
        memory: '16MiB',
        vms: [{ name: 'a', type: 'snp', vcpus: 1 }],
        steps: [
          { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '1MiB' },
          {
            op: 'set_user_memory_region2',
            vm: 'a',
            slot: 0,
            flags: ['guest_memfd'],
            guest_phys_addr: 0,
            memory_size: '1MiB',
            guest_memfd: 'g',
          },
          { op: 'set_memory_attributes', vm: 'a', address: 0, size: '1MiB', attributes: 'private' },
          {
            op: 'guest_read',
            vm: 'a',
            vcpu: 0,
            gpa: '0x1000',
            len: 4,
            expect: 'fail_entry',
            expect_value: { hardware_entry_failure_reason: -1 },
          },
          { op: 'snp_launch_start', vm: 'a', expect: 'ok' },
          { op: 'guest_write', vm: 'a', vcpu: 0, gpa: '0x1000', data: '01', expect: 'fail_entry' },
          { op: 'pvalidate', vm: 'a', vcpu: 0, gpa: '0x1000', expect: 'fail_entry' },
          { op: 'pre_fault_memory', vm: 'a', vcpu: 0, gpa: 0, size: '4KiB', expect: 'EOPNOTSUPP' },
          { op: 'snp_launch_finish', vm: 'a', expect: 'ok' },
          { op: 'guest_read', vm: 'a', vcpu: 0, gpa: '0x1000', len: 4, expect: 'vc' },
        ],
      }),
    );
    expect(r.steps.map((s) => s.result)).toEqual([
      'ok',
      'ok',
      'ok',
      'fail_entry',
      'ok',
      'fail_entry',
      'fail_entry',
      'EOPNOTSUPP',
      'ok',
      'vc',
    ]);
    expect(r.ok).toBe(true);
  });
});

describe('LAUNCH_START and RMP entries the ASID already owns', () => {
  it('prepare-on-allocate: fallocate assigns the pages to the ASID before LAUNCH_START; KVM checks no RMP entry, so LAUNCH_START succeeds and LAUNCH_UPDATE of such a page fails (EIO)', async () => {
    const { vm, gmem } = await setupVm({ type: 'snp', policy: 'prepare-on-allocate' });
    await gmem.fallocate(['keep_size'], 0, 2 * PAGE_SIZE);
    expect(vm.rmpQuery(0)).toMatchObject({ present: true, assigned: true, asid: vm.asid, gpa: 0 });
    await vm.snpLaunchStart();
    await expect(vm.snpLaunchUpdate({ gpa: 0, data: image(1) })).rejects.toMatchObject({ code: 'EIO', errno: 5 });
    // A page the ASID does not own yet populates normally.
    await expect(vm.snpLaunchUpdate({ gpa: 4 * PAGE_SIZE, data: image(2) })).resolves.toEqual({ pagesDone: 1 });
    await vm.snpLaunchFinish();
  });
});

describe('kvm->lock around every SEV ioctl', () => {
  it('held by the VMM during LAUNCH_START (while the firmware works) and, outside slots_lock, during LAUNCH_UPDATE; reports name it', async () => {
    const rt = await startRuntime('prepare-on-fault-own-vm');
    await rt.createVms([{ name: 'a', type: 'snp', vcpus: 0 }]);
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
    const vms = new Vms(rt.mem);
    const vm = rt.vmIds.get('a')!;
    const owner = (word: number): number => (Atomics.load(rt.mem.w, word) & OWNER_MASK) - 1;
    expect(wordDescriber(rt.mem)(vms.kvmLockWord(vm)).name).toBe(`kvm->lock of vm ${vm}`);
    expect(Atomics.load(rt.mem.w, vms.kvmLockWord(vm))).toBe(0);

    const fw = rt.control.armPause(pointId('firmware.before_command'));
    const start = v.exec({ op: 'snp_launch_start', vm: 'a' });
    await rt.control.whenHeld(fw, 5000);
    expect(owner(vms.kvmLockWord(vm))).toBe(TID_VMM);
    expect(Atomics.load(rt.mem.w, vms.slotsLockWord(vm))).toBe(0);
    rt.control.release(fw);
    expectOk(await start);
    expect(Atomics.load(rt.mem.w, vms.kvmLockWord(vm))).toBe(0);

    const pp = rt.control.armPause(pointId('populate.before_post_populate'));
    const update = v.exec({ op: 'snp_launch_update', vm: 'a', gpa: 0, len: PAGE_SIZE, data: 'c0ffee' });
    await rt.control.whenHeld(pp, 5000);
    expect(owner(vms.kvmLockWord(vm))).toBe(TID_VMM);
    expect(owner(vms.slotsLockWord(vm))).toBe(TID_VMM);
    rt.control.release(pp);
    expectOk(await update);
    expectOk(await v.exec({ op: 'snp_launch_finish', vm: 'a' }));
    expect(Atomics.load(rt.mem.w, vms.kvmLockWord(vm))).toBe(0);
    expect(Atomics.load(rt.mem.w, vms.slotsLockWord(vm))).toBe(0);
  });
});
