// A GMEM_ONLY memslot's shared fault (f029f04ddbec: kvm_mmu_faultin_pfn_gmem for a shared gfn)
// that must retry after kvm_gmem_get_pfn, because an invalidation ran meanwhile (the unlocked
// mmu_invalidate_retry_gfn_unsafe check again, d02c357e5bfa), gives back the folio reference
// get_pfn took, as a private fault does. Real worker threads: the vCPU is held at
// fault.after_get_pfn while the VMM punches another page of the same file.

import { describe, expect, it } from 'vitest';
import { runScenario } from '../../src/vmm/scenario/runner.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { gmemOnlyScenario } from '../helpers/gmem-only.js';

const scenario = parseScenario(
  gmemOnlyScenario([
    { op: 'pause', point: 'fault.after_get_pfn', actor: { vm: 'a', vcpu: 0 } },
    { op: 'guest_read', vm: 'a', vcpu: 0, gpa: '1MiB', len: 1, expect: 'ok', expect_value: '00' },
    { op: 'await_held', point: 'fault.after_get_pfn', expect: 'ok' },
    { op: 'fallocate', fd: 'g', mode: ['keep_size', 'punch_hole'], offset: '4KiB', len: '4KiB', expect: 'ok' },
    { op: 'resume', point: 'fault.after_get_pfn', expect: 'ok', expect_value: { was_held: true } },
    { op: 'settle', expect: 'ok' },
    { op: 'stats', expect: 'ok', expect_value: { faultRetries: 1 } },
    { op: 'folio_query', fd: 'g', offset: 0, expect: 'ok', expect_value: { present: true, uptodate: true, refcount: 1 } },
  ]),
);

describe('GMEM_ONLY shared fault retried after kvm_gmem_get_pfn', () => {
  it('drops the folio reference it took: refcount 1 (the page cache), and the audit is clean', async () => {
    const r = await runScenario(scenario);
    const failed = r.steps.filter((s) => !s.pass);
    expect(failed, JSON.stringify(failed)).toEqual([]);
    expect(r.crashes).toEqual([]);
    expect(r.audit.counts.balance).toBe(0);
    expect(r.ok).toBe(true);
  });
});
