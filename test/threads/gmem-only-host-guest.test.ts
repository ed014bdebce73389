// A default VM's guest on a GMEM_ONLY memslot (576d035e2aef; its shared faults take
// kvm_gmem_get_pfn, f029f04ddbec) and the VMM through its mapping of the same guest_memfd
// (kvm_gmem_fault_user_mapping, fe2bf6234e94) race for the first use of a folio, on real worker
// threads: the host fault is held after its clear, before its PTE (the folio locked), while the
// vCPU's fault waits for that folio. The folio is cleared once, by the host fault, and from then
// on the guest and the host read each other's bytes, until a PUNCH_HOLE zaps both mappings and
// both see the new zeroed folio. The end-of-run audit checks the host PTEs and shared SPTEs.

import { describe, expect, it } from 'vitest';
import { runScenario } from '../../src/vmm/scenario/runner.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { GMEM_ONLY_GPA, gmemOnlyScenario } from '../helpers/gmem-only.js';

const GPA = GMEM_ONLY_GPA;
const scenario = parseScenario(
  gmemOnlyScenario([
    { op: 'mmap', fd: 'g', as: 'm', offset: 0, size: '8KiB', expect: 'ok' },
    { op: 'stats', expect: 'ok', expect_value: { clears: 0, hostFaults: 0 } },
    { op: 'pause', point: 'host_fault.before_pte', actor: 'vmm' },
    { op: 'host_read', map: 'm', offset: 0, len: 4, expect: 'ok' },
    { op: 'await_held', point: 'host_fault.before_pte', expect: 'ok' },
    // The vCPU's kvm_gmem_get_pfn waits for the folio lock the held host fault keeps.
    { op: 'guest_write', vm: 'a', vcpu: 0, gpa: GPA, data: 'aabbccdd', expect: 'ok' },
    { op: 'resume', point: 'host_fault.before_pte', expect: 'ok', expect_value: { was_held: true } },
    { op: 'settle', expect: 'ok' },
    { op: 'stats', expect: 'ok', expect_value: { clears: 1, prepares: 1, hostFaults: 1 } },
    { op: 'folio_query', fd: 'g', offset: 0, expect: 'ok', expect_value: { present: true, uptodate: true, refcount: 2 } },
    { op: 'host_read', map: 'm', offset: 0, len: 4, expect: 'ok', expect_value: 'aabbccdd' },
    { op: 'host_write', map: 'm', offset: '4KiB', data: '0102', expect: 'ok' },
    { op: 'guest_read', vm: 'a', vcpu: 0, gpa: '0x101000', len: 2, expect: 'ok', expect_value: '0102' },
    { op: 'fallocate', fd: 'g', mode: ['keep_size', 'punch_hole'], offset: 0, len: '8KiB', expect: 'ok' },
    { op: 'folio_query', fd: 'g', offset: 0, expect: 'ok', expect_value: { present: false } },
    { op: 'guest_read', vm: 'a', vcpu: 0, gpa: GPA, len: 4, expect: 'ok', expect_value: '00000000' },
    { op: 'host_read', map: 'm', offset: '4KiB', len: 2, expect: 'ok', expect_value: '0000' },
    { op: 'stats', expect: 'ok', expect_value: { clears: 4, hostFaults: 3, hostPtesZapped: 2 } },
  ]),
);

describe('a default VM’s guest and the host on one GMEM_ONLY guest_memfd, on worker threads', () => {
  it('race for a new folio: one clear, then each reads the other’s bytes; a PUNCH_HOLE zaps both; the audit is clean', async () => {
    const r = await runScenario(scenario);
    const failed = r.steps.filter((s) => !s.pass);
    expect(failed, JSON.stringify(failed)).toEqual([]);
    expect(r.crashes).toEqual([]);
    expect(r.audit.counts).toMatchObject({ staleData: 0, useAfterFree: 0, hostIsolation: 0, balance: 0 });
    expect(r.ok).toBe(true);
  });
});
