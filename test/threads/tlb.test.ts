// The per-vCPU TLB: a mapped access hits it; the flush request every zap sends
// (kvm_flush_remote_tlbs -> KVM_REQ_TLB_FLUSH) drops it on the next entry; and a zap that sends none
// (planted bug 'zap-skips-tlb-flush') leaves a stale translation that the auditor catches on the
// first access through it.

import { describe, expect, it } from 'vitest';
import { bugMask, setBugs } from '../../src/gmem/bugs.js';
import { HOST_PATTERN } from '../../src/gmem/folio.js';
import { mapBuffers } from '../../src/shm/layout.js';
import { sumStats } from '../../src/shm/stats.js';
import { auditQuiescent } from '../../src/checker/audit.js';
import { buildSandboxMemory } from '../../src/vmm/sandbox/build.js';
import { Sandbox } from '../../src/vmm/sandbox/sandbox.js';

const PAGE = 4096;
const MiB = 1 << 20;

/** A sw-protected VM with 1 MiB of private guest_memfd at gpa 0, in process; bugs planted first. */
function privateVcpu(bugs: string[] = []) {
  const desc = buildSandboxMemory({ memory: '4MiB', gpaSpace: '4MiB', userMemory: '1MiB', gmemSpace: '4MiB', maxVms: 1 });
  setBugs(mapBuffers(desc.buffers), bugMask(bugs));
  const sb = Sandbox.attach(desc, 1, { platform: 'direct' });
  const vm = sb.createVmSync({ type: 'sw-protected' });
  const gmem = vm.createGuestMemfdSync({ size: MiB });
  vm.setUserMemoryRegion2Sync({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: gmem });
  vm.setMemoryAttributesSync({ address: 0, size: MiB, attributes: 'private' });
  return { sb, gmem, vcpu: vm.createVcpuSync() };
}

const stat = (sb: Sandbox, name: 'faults' | 'staleTlbAccesses' | 'guestReads'): number => sumStats(sb.mem)[name];

describe('the per-vCPU TLB', () => {
  it('a mapped access hits the TLB; a punch flushes it and the next access faults again', () => {
    const { sb, gmem, vcpu } = privateVcpu();
    expect(vcpu.writeSync(5 * PAGE, Uint8Array.of(7)).ok).toBe(true);
    expect(stat(sb, 'faults')).toBe(1);
    const pfn = vcpu.vm.backingPfn(5 * PAGE);
    expect(vcpu.cpu.tlb.lookup(5, true)).toBe(pfn);
    // A hit: no fault, the guest's own byte.
    expect(vcpu.readSync(5 * PAGE, 1)).toEqual({ ok: true, data: Uint8Array.of(7) });
    expect(stat(sb, 'faults')).toBe(1);
    const flushes = vcpu.cpu.tlb.flushes;
    gmem.fallocateSync(['keep_size', 'punch_hole'], 5 * PAGE, PAGE);
    // The zap asked this vCPU (outside guest mode) for a flush: done on its next entry.
    expect(vcpu.readSync(5 * PAGE, 1)).toEqual({ ok: true, data: Uint8Array.of(0) });
    expect(vcpu.cpu.tlb.flushes).toBe(flushes + 1);
    expect(stat(sb, 'faults')).toBe(2);
    expect(stat(sb, 'staleTlbAccesses')).toBe(0);
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
  });

  it('a PVALIDATE-free sw guest keeps one entry per gfn: a punch of another gfn drops it too (a whole flush)', () => {
    const { gmem, vcpu } = privateVcpu();
    vcpu.readSync(1 * PAGE, 1);
    vcpu.readSync(2 * PAGE, 1);
    gmem.fallocateSync(['keep_size', 'punch_hole'], 2 * PAGE, PAGE);
    vcpu.readSync(3 * PAGE, 1);
    expect(vcpu.cpu.tlb.lookup(1, true)).toBe(-1);
    expect(vcpu.cpu.tlb.lookup(3, true)).toBe(vcpu.vm.backingPfn(3 * PAGE));
  });

  it('planted missing flush: the access through the stale translation is caught, exactly once', () => {
    const { sb, gmem, vcpu } = privateVcpu(['zap-skips-tlb-flush']);
    expect(vcpu.writeSync(5 * PAGE, Uint8Array.of(7)).ok).toBe(true);
    const pfn = vcpu.vm.backingPfn(5 * PAGE);
    gmem.fallocateSync(['keep_size', 'punch_hole'], 5 * PAGE, PAGE);
    // The page is freed (painted), yet the TLB still translates gfn 5 to it.
    expect(vcpu.cpu.tlb.lookup(5, true)).toBe(pfn);
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
    // The audited access sees the zapped SPTE, finds no flush was asked, counts it and walks again.
    expect(vcpu.readSync(5 * PAGE, 1)).toEqual({ ok: true, data: Uint8Array.of(0) });
    expect(stat(sb, 'staleTlbAccesses')).toBe(1);
    const v = auditQuiescent(sb.mem);
    expect(v.counts.useAfterFree).toBe(1);
    expect(v.violations[0].detail).toBe('1 guest access(es) went through a TLB entry whose SPTE was zapped without a TLB flush');
  });

  it('without the audit, the stale translation reads the freed page: what the check is for', () => {
    const { sb, gmem, vcpu } = privateVcpu(['zap-skips-tlb-flush']);
    vcpu.cpu.auditTlb = false;
    expect(vcpu.writeSync(5 * PAGE, Uint8Array.of(7)).ok).toBe(true);
    gmem.fallocateSync(['keep_size', 'punch_hole'], 5 * PAGE, PAGE);
    expect(vcpu.readSync(5 * PAGE, 1)).toEqual({ ok: true, data: Uint8Array.of(HOST_PATTERN) });
    expect(stat(sb, 'faults')).toBe(1);
    expect(stat(sb, 'staleTlbAccesses')).toBe(0);
  });
});
