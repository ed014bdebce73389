// SNP launch state on real worker threads: a vCPU thread before LAUNCH_FINISH exits fail_entry
// (hardware_entry_failure_reason SVM_EXIT_ERR), and every SEV ioctl runs under kvm->lock
// (sev_mem_enc_ioctl), outside slots_lock during LAUNCH_START's firmware command and inside it
// during LAUNCH_UPDATE's kvm_gmem_populate.

import { afterEach, describe, expect, it } from 'vitest';
import { wordDescriber } from '../../src/firmware/describe.js';
import { Vms } from '../../src/kvm/vm.js';
import { pointId } from '../../src/shm/points.js';
import { OWNER_MASK } from '../../src/shm/sync/words.js';
import { TID_VMM } from '../../src/vmm/sandbox/runtime.js';
import { runScenario } from '../../src/vmm/scenario/runner.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { MiB, PAGE, expectOk, shutdownAll, startRuntime } from '../helpers/runtime-helpers.js';

afterEach(shutdownAll);

describe('an SNP vCPU thread before LAUNCH_FINISH', () => {
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
    const update = v.exec({ op: 'snp_launch_update', vm: 'a', gpa: 0, len: PAGE, data: 'c0ffee' });
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
