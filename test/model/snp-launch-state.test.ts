// SNP launch state on the calling thread: an SNP vCPU cannot enter before LAUNCH_FINISH (VMRUN
// with a VMSA that snp_launch_update_vmsa has not yet encrypted fails, and svm_handle_exit reports
// KVM_EXIT_FAIL_ENTRY), pre-fault stays -EOPNOTSUPP, and snp_launch_start does not look at the
// RMP, so LAUNCH_UPDATE of a page the ASID already owns fails in the firmware (-EIO).

import { describe, expect, it } from 'vitest';
import { RunControl } from '../../src/vcpu-workers/runctl.js';
import { runWorkload } from '../../src/vcpu-workers/guest-workload.js';
import { PAGE_SIZE, image, setupVm, statsDelta } from '../helpers/helpers.js';

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
