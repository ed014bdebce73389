// 7.4's in-place conversion (__kvm_gmem_set_attributes, 799c9fadc639) against a vCPU's shared
// fault on real worker threads. The conversion to private holds the invalidate lock for write
// from before its zap until the attributes are stored (mmu_invalidate in progress throughout);
// the vCPU's GMEM_ONLY shared fault (2e646bcfcf90) waits for it, then finds the gfn private
// (kvm_gmem_is_private_gfn) and exits to userspace with KVM_EXIT_MEMORY_FAULT instead of mapping
// the page shared. The host's PTE went first (unmap_mapping_pages), so its next touch is SIGBUS
// (kvm_gmem_fault_user_mapping checks the attribute under the invalidate lock).

import { describe, expect, it } from 'vitest';
import { runScenario } from '../../src/vmm/scenario/runner.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { gmemOnlyScenario } from '../helpers/gmem-only.js';

const POINT = 'set_attributes.after_invalidate_begin';

const scenario = parseScenario(
  gmemOnlyScenario(
    [
      { op: 'mmap', fd: 'g', as: 'm', offset: 0, size: '8KiB', expect: 'ok' },
      { op: 'host_write', map: 'm', offset: 0, data: 'aa', expect: 'ok' },
      // A shared SPTE for the page: the conversion must zap it.
      { op: 'guest_read', vm: 'a', vcpu: 0, gpa: '1MiB', len: 1, private: false, expect: 'ok', expect_value: 'aa' },
      { op: 'pause', point: POINT, actor: 'vmm' },
      { op: 'set_memory_attributes2', fd: 'g', offset: 0, size: '4KiB', attributes: 'private', expect: 'ok' },
      { op: 'await_held', point: POINT, expect: 'ok' },
      // In flight while the conversion holds the invalidate lock: it cannot map the page shared.
      { op: 'guest_read', vm: 'a', vcpu: 0, gpa: '1MiB', len: 1, private: false, expect: 'memory_fault' },
      { op: 'resume', point: POINT, expect: 'ok', expect_value: { was_held: true } },
      { op: 'settle', expect: 'ok' },
      // The contents stayed in place; the host has lost the page, the other one is still shared.
      { op: 'guest_read', vm: 'a', vcpu: 0, gpa: '1MiB', len: 1, expect: 'ok', expect_value: 'aa' },
      { op: 'host_read', map: 'm', offset: 0, len: 1, expect: 'SIGBUS' },
      { op: 'host_write', map: 'm', offset: '4KiB', data: 'bb', expect: 'ok' },
      { op: 'stats', expect: 'ok', expect_value: { conversions: 1, conversionsRefused: 0 } },
    ],
    { kernel: '7.4', vmType: 'sw-protected', module_params: { gmem_in_place_conversion: true } },
  ),
);

describe('a conversion to private against a vCPU shared fault (worker threads)', () => {
  it('the fault waits for the conversion, then exits with KVM_EXIT_MEMORY_FAULT; no shared SPTE survives', async () => {
    const r = await runScenario(scenario);
    const failed = r.steps.filter((s) => !s.pass);
    expect(failed, JSON.stringify(failed)).toEqual([]);
    expect(r.crashes).toEqual([]);
    expect(r.audit.violations).toEqual([]);
    expect(r.ok).toBe(true);
  });
});

const pinned = parseScenario({
  kernel: '7.4',
  module_params: { gmem_in_place_conversion: true },
  memory: '4MiB',
  vms: [{ name: 'a', type: 'sw-protected', vcpus: 1 }],
  steps: [
    { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '16KiB', flags: ['mmap', 'init_shared'], expect: 'ok' },
    { op: 'mmap', fd: 'g', as: 'm', offset: 0, size: '16KiB', expect: 'ok' },
    { op: 'host_write', map: 'm', offset: '8KiB', data: 'cc', expect: 'ok' },
    { op: 'gup_pin', map: 'm', offset: '8KiB', as: 'p', expect: 'ok' },
    {
      op: 'set_memory_attributes2',
      fd: 'g',
      offset: 0,
      size: '16KiB',
      attributes: 'private',
      expect: 'EAGAIN',
      expect_value: { error_offset: 8192 },
    },
    { op: 'unpin', pin: 'p', expect: 'ok' },
    { op: 'unpin', pin: 'p', expect: 'EINVAL' },
    { op: 'set_memory_attributes2', fd: 'g', offset: 0, size: '16KiB', attributes: 'private', expect: 'ok' },
    { op: 'set_memory_attributes2', fd: 'g', offset: '0x1000', size: '0xfffffffffffff000', attributes: 'shared', expect: 'EINVAL' },
    { op: 'host_read', map: 'm', offset: '8KiB', len: 1, expect: 'SIGBUS' },
  ],
});

describe('the scenario ops gup_pin, unpin and set_memory_attributes2 (worker threads)', () => {
  it('a pin refuses the conversion with EAGAIN and error_offset in bytes; unpinned, it passes', async () => {
    const r = await runScenario(pinned);
    const failed = r.steps.filter((s) => !s.pass);
    expect(failed, JSON.stringify(failed)).toEqual([]);
    expect(r.ok).toBe(true);
  });
});

// The punch-hole leftover of examples/punch-hole-leftover.json on 7.4: kvm_gmem_get_pfn now holds
// the invalidate lock (shared) for its whole run (1ae5be958ff7), so the fault released between
// PUNCH_HOLE's truncation and its invalidate_end waits for the punch instead of putting a new
// folio into the punched range.
const leftover = parseScenario({
  kernel: '7.4',
  memory: '16MiB',
  vms: [{ name: 'a', type: 'snp', vcpus: 1 }],
  steps: [
    { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '1MiB', expect: 'ok' },
    { op: 'set_user_memory_region2', vm: 'a', slot: 0, flags: ['guest_memfd'], guest_phys_addr: 0, memory_size: '1MiB', guest_memfd: 'g' },
    { op: 'set_memory_attributes', vm: 'a', address: 0, size: '1MiB', attributes: 'private', expect: 'ok' },
    { op: 'snp_launch_start', vm: 'a', expect: 'ok' },
    { op: 'snp_launch_finish', vm: 'a', expect: 'ok' },
    { op: 'pause', point: 'fault.before_get_pfn', actor: { vm: 'a', vcpu: 0 } },
    { op: 'guest_read', vm: 'a', vcpu: 0, gpa: '0x2000', len: 4, expect: 'vc' },
    { op: 'await_held', point: 'fault.before_get_pfn' },
    { op: 'pause', point: 'punch_hole.after_truncate', actor: 'vmm' },
    { op: 'fallocate', fd: 'g', mode: ['keep_size', 'punch_hole'], offset: '0x2000', len: '4KiB', expect: 'ok' },
    { op: 'await_held', point: 'punch_hole.after_truncate' },
    { op: 'pause', point: 'fault.after_get_pfn', actor: { vm: 'a', vcpu: 0 } },
    { op: 'resume', point: 'fault.before_get_pfn' },
    // The fault waits for the invalidate lock the punch holds: it never gets its pfn meanwhile.
    { op: 'await_held', point: 'fault.after_get_pfn', timeout_ms: 300, expect: 'ETIMEDOUT' },
    { op: 'resume', point: 'punch_hole.after_truncate' },
    { op: 'await_held', point: 'fault.after_get_pfn', expect: 'ok' },
    { op: 'resume', point: 'fault.after_get_pfn' },
    { op: 'settle', expect: 'ok' },
    // It got the folio after the punch, then saw the invalidation's sequence move and retried once.
    { op: 'stats', expect_value: { punchHoleLeftovers: 0, faultRetries: 1, foliosAllocated: 1, foliosFreed: 0 } },
    { op: 'folio_query', fd: 'g', offset: '0x2000', expect: 'ok', expect_value: { present: true, uptodate: true } },
  ],
});

describe('the punch-hole leftover cannot happen on 7.4 (worker threads)', () => {
  it('the fault waits for PUNCH_HOLE to end, then allocates the page after it: no leftover', async () => {
    const r = await runScenario(leftover);
    const failed = r.steps.filter((s) => !s.pass);
    expect(failed, JSON.stringify(failed)).toEqual([]);
    expect(r.findings.punchHoleLeftovers).toBe(0);
    expect(r.ok).toBe(true);
  });
});
