// Free-running stress on worker threads (vmm/stress): every prepare policy audited to 0
// violations; planted bugs caught (a folio not cleared before use: stale data; no
// sev_gmem_invalidate on free: host isolation; a zap without kvm_flush_remote_tlbs: use after free
// through a stale TLB entry); and a traced run of the default configuration and length drops no
// trace event.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { PolicyName } from '../../src/gmem/policy.js';
import { INVARIANTS } from '../../src/checker/violations.js';
import { type StressReport, resolveStressOptions, runStress, traceRingFor } from '../../src/vmm/stress/stress.js';
import { tempDir } from '../helpers/cli-helpers.js';

const zero = Object.fromEntries(INVARIANTS.map((i) => [i, 0]));

/** A clean run: no crash, no violation, and it did the work (faults, zaps, VMM punches, guest accesses). */
function expectClean(r: StressReport, vmType: 'snp' | 'sw-protected', seed: number): void {
  expect(r.crashes).toEqual([]);
  expect(r.violations, JSON.stringify(r.violationDetails)).toEqual(zero);
  expect(r.ok).toBe(true);
  expect(r.seed).toBe(seed);
  expect(r.counters.faults).toBeGreaterThan(0);
  expect(r.counters.sptesInstalled).toBeGreaterThan(0);
  expect(r.counters.sptesZapped).toBeGreaterThan(0);
  expect(r.vmmOps.punch).toBeGreaterThan(0);
  expect(r.guestAccesses).toBeGreaterThan(0);
  if (vmType === 'snp') expect(r.counters.archPrepareCalls).toBeGreaterThan(0);
  else expect(r.counters.archPrepareCalls).toBe(0);
}

describe('stress runs end with 0 violations', () => {
  // snp with prepare-on-fault-own-vm is the default configuration: the traced run below.
  const runs: Array<{ policy: PolicyName; vmType: 'snp' | 'sw-protected' }> = [
    { policy: 'prepare-on-allocate', vmType: 'snp' },
    { policy: 'prepare-on-fault', vmType: 'snp' },
    { policy: 'prepare-on-fault-own-vm', vmType: 'sw-protected' },
  ];
  for (const { policy, vmType } of runs) {
    it(`${vmType}, ${policy}`, async () => {
      const r = await runStress({ policy, vmType, durationMs: 800, seed: 7, vcpus: 2, auditEveryMs: 500, memory: '16MiB' });
      expectClean(r, vmType, 7);
    });
  }

  it('with no VMM op to draw (an empty mix, or all weights 0) the VMM idles and the quiescent audits still run', async () => {
    for (const ops of ['', 'punch=0,convert=0']) {
      const r = await runStress({ ops, durationMs: 600, seed: 3, vcpus: 2, auditEveryMs: 400, memory: '16MiB' });
      expect(r.ok, ops).toBe(true);
      expect(r.crashes, ops).toEqual([]);
      expect(
        Object.values(r.vmmOps).reduce((a, b) => a + b, 0),
        ops,
      ).toBe(0);
      expect(r.counters.faults, ops).toBeGreaterThan(0);
    }
  });

  it('snp, prepare-on-fault-own-vm: the default configuration traced drops no event, and the 5 s ring holds its busiest thread', async () => {
    const file = `${tempDir()}/t.json`;
    // The default run's configuration, 2 s of it: the ring is sized per second of the run.
    const r = await runStress({ durationMs: 2000, seed: 7, trace: file });
    expect(r.config).toMatchObject({ policy: 'prepare-on-fault-own-vm', vmType: 'snp', durationMs: 2000 });
    expect(resolveStressOptions({}).durationMs).toBe(5000);
    expectClean(r, 'snp', 7);
    const t = JSON.parse(readFileSync(file, 'utf8'));
    expect(t.metadata).toEqual({ droppedEvents: 0, droppedByThread: {} });
    const events: Array<{ name: string; tid: number; ph: string }> = t.traceEvents;
    expect(events.filter((e) => e.name === 'fault').length).toBeGreaterThan(1000);
    // The busiest thread's events at this rate for the default 5 s fit the ring the default run gets.
    const perTid = new Map<number, number>();
    for (const e of events) if (e.ph !== 'M') perTid.set(e.tid, (perTid.get(e.tid) ?? 0) + 1);
    const busiest = Math.max(...perTid.values());
    expect(busiest * (5000 / 2000)).toBeLessThan(traceRingFor({ durationMs: 5000 }));
  });
});

describe('free-mode stress catches planted bugs (the checks are not inert)', () => {
  it('prepare-skips-clear: a guest reads host bytes (stale data), and the run fails', async () => {
    const r = await runStress({
      policy: 'prepare-on-fault-own-vm',
      durationMs: 800,
      seed: 3,
      vcpus: 2,
      memory: '16MiB',
      auditEveryMs: 0,
      bugs: ['prepare-skips-clear'],
    });
    expect(r.ok).toBe(false);
    expect(r.violations.staleData).toBeGreaterThan(0);
    expect(r.crashes).toEqual([]);
  });

  it('skip-arch-invalidate-on-free: freed pages stay guest-owned (host isolation), and the run fails', async () => {
    const r = await runStress({
      policy: 'prepare-on-fault',
      durationMs: 800,
      seed: 3,
      vcpus: 2,
      memory: '16MiB',
      auditEveryMs: 0,
      bugs: ['skip-arch-invalidate-on-free'],
    });
    expect(r.ok).toBe(false);
    expect(r.violations.hostIsolation).toBeGreaterThan(0);
  });
});

describe('free-mode stress catches a missing TLB flush', () => {
  it('a missing flush fails the run (useAfterFree); the clean runs above, which zap, have none', async () => {
    const bad = await runStress({
      policy: 'prepare-on-fault-own-vm',
      vmType: 'sw-protected',
      durationMs: 800,
      seed: 3,
      vcpus: 2,
      memory: '16MiB',
      auditEveryMs: 0,
      bugs: ['zap-skips-tlb-flush'],
    });
    expect(bad.crashes).toEqual([]);
    expect(bad.ok).toBe(false);
    expect(bad.violations.useAfterFree).toBeGreaterThan(0);
    expect(bad.violationDetails.some((v) => v.detail.endsWith('went through a TLB entry whose SPTE was zapped without a TLB flush'))).toBe(
      true,
    );
  });
});
