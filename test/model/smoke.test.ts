// A private SNP page end to end on the calling thread: the first access faults the page in
// (kvm_gmem_get_pfn, cleared, then sev_gmem_prepare -> rmp_make_private) and raises #VC until the
// guest's PVALIDATE, then reads zeros; PUNCH_HOLE (kvm_gmem_punch_hole) frees it back to the
// hypervisor (sev_gmem_invalidate); a mode without KEEP_SIZE is -EOPNOTSUPP and the file has no read.

import { describe, expect, it } from 'vitest';
import { HOST_PATTERN, KvmError, Sandbox } from '../../src/index.js';

describe('smoke', () => {
  it('faults a private page under SNP and reads zeros', async () => {
    const sb = await Sandbox.create({ policy: 'prepare-on-fault', memory: '4MiB' });
    const vm = await sb.createVm({ type: 'snp' });
    const gmem = await vm.createGuestMemfd({ size: '1MiB' });
    await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: '1MiB', guestMemfd: gmem });
    await vm.setMemoryAttributes({ address: 0, size: '1MiB', attributes: 'private' });
    await vm.snpLaunchStart();
    await vm.snpLaunchFinish();
    const vcpu = await vm.createVcpu();
    const r1 = await vcpu.read(0x1000, 16);
    expect(r1).toEqual({ ok: false, exit: 'vc' });
    expect(await vcpu.pvalidate(0x1000)).toEqual({ ok: true, code: 0 });
    const r2 = await vcpu.read(0x1000, 16);
    expect(r2.ok && [...r2.data]).toEqual(new Array(16).fill(0));
    const q = vm.rmpQuery(0x1000);
    expect(q).toMatchObject({ present: true, assigned: true, asid: vm.asid, gpa: 0x1000, validated: true });
    await gmem.fallocate(['keep_size', 'punch_hole'], 0, '1MiB');
    expect(vm.rmpQuery(0x1000)).toEqual({ present: false });
    expect(sb.hostPage(q.pfn!)[0]).toBe(HOST_PATTERN);
    await expect(gmem.fallocate(['punch_hole'], 0, 4096)).rejects.toMatchObject({ code: 'EOPNOTSUPP' });
    expect(() => gmem.read()).toThrow(KvmError);
  });
});
