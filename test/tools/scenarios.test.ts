// Scenario files on worker threads: two SNP VMs on one inode (the cross-VM prepare of
// kvm_gmem_prepare_folio at b85524314a), the PUNCH_HOLE-versus-fault leftover (a folio left behind
// between truncate and kvm_gmem_invalidate_end) replayed exactly with pause points, and every
// example scenario run clean.

import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScenario } from '../../src/vmm/scenario/runner.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';

const root = new URL('../..', import.meta.url).pathname;
const examples = join(root, 'examples');
const load = (file: string): unknown => JSON.parse(readFileSync(join(examples, file), 'utf8'));

describe('two SNP VMs on one inode (examples/two-vms-one-inode.json)', () => {
  it('the page VM a faults goes to VM b, whose file is first in the list: a cross-VM prepare finding', async () => {
    const r = await runScenario(parseScenario(load('two-vms-one-inode.json')));
    expect(r.ok, JSON.stringify(r.steps.filter((s) => !s.pass))).toBe(true);
    expect(r.steps.find((s) => s.op === 'guest_read')).toMatchObject({ result: 'rmp_violation', exit: 'rmp_violation' });
    expect(r.findings.crossVmPrepare).toBe(1);
    expect(r.audit.counts.rmpAgreement).toBe(0);
  });
});

describe('punch-hole leftover, replayed with pause points', () => {
  it('is reproduced exactly, three times in a row', async () => {
    const shapes: unknown[] = [];
    for (let run = 0; run < 3; run++) {
      const r = await runScenario(parseScenario(load('punch-hole-leftover.json')));
      const failed = r.steps.filter((s) => !s.pass);
      expect(failed, JSON.stringify(failed)).toEqual([]);
      expect(r.crashes).toEqual([]);
      expect(r.audit.ok, JSON.stringify(r.audit.violations)).toBe(true);
      expect(r.ok).toBe(true);
      expect(r.findings.punchHoleLeftovers).toBe(1);
      // The fault created and prepared a folio inside the punched range after truncate; it is
      // still there, up to date, after PUNCH_HOLE returned.
      const q = r.steps.find((s) => s.op === 'folio_query');
      expect(q?.result).toBe('ok');
      expect(q?.value).toMatchObject({ present: true, uptodate: true, hwpoison: false });
      // The held guest_read finished once everything was let go: a fresh SNP page, #VC.
      expect(r.steps.find((s) => s.op === 'guest_read')).toMatchObject({ result: 'vc', exit: 'vc', pass: true });
      expect(r.steps.find((s) => s.op === 'stats')?.value).toMatchObject({
        punchHoleLeftovers: 1,
        foliosAllocated: 1,
        foliosFreed: 0,
        punchHoles: 1,
      });
      // Same steps, same outcomes, same pfn every time.
      shapes.push(
        r.steps.map((s) => [
          s.index,
          s.op,
          s.result,
          s.op === 'folio_query' ? { pfn: (s.value as { pfn: number }).pfn } : s.op === 'rmp_query' ? s.value : null,
        ]),
      );
    }
    expect(shapes[1]).toEqual(shapes[0]);
    expect(shapes[2]).toEqual(shapes[0]);
  });
});

describe('every example scenario', () => {
  const files = readdirSync(examples).filter((f) => f.endsWith('.json'));
  it('there are examples to run', () => {
    expect(files.length).toBeGreaterThanOrEqual(4);
  });
  for (const f of files) {
    it(`${f} runs with ok === true`, async () => {
      const r = await runScenario(parseScenario(load(f)));
      const failed = r.steps.filter((s) => !s.pass);
      expect(failed, JSON.stringify(failed)).toEqual([]);
      expect(r.crashes).toEqual([]);
      expect(r.audit.counts).toEqual({
        staleData: 0,
        rmpAgreement: 0,
        hostIsolation: 0,
        useAfterFree: 0,
        dataLost: 0,
        balance: 0,
        liveness: 0,
        lockOrder: 0,
        assertion: 0,
        launchState: 0,
      });
      expect(r.ok).toBe(true);
    });
  }
});

describe('host mappings in a scenario, on the VMM worker (examples/guest-memfd-mmap.json, kvm_gmem_fault_user_mapping)', () => {
  it('SIGBUS and SIGSEGV are outcomes an expect names; expecting ok instead fails the step with the signal', async () => {
    const raw = load('guest-memfd-mmap.json') as { steps: Array<Record<string, unknown>> };
    const r = await runScenario(parseScenario(raw));
    expect(r.ok).toBe(true);
    expect(r.steps.filter((s) => s.op === 'host_read').map((s) => s.result)).toEqual(['ok', 'SIGBUS', 'ok', 'SIGSEGV']);
    const sigbus = raw.steps.findIndex((s) => s.op === 'host_read' && s.expect === 'SIGBUS');
    raw.steps[sigbus] = { ...raw.steps[sigbus], expect: 'ok' };
    const bad = await runScenario(parseScenario(raw));
    expect(bad.ok).toBe(false);
    const failed = bad.steps.filter((s) => !s.pass);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ index: String(sigbus), op: 'host_read', result: 'SIGBUS' });
    expect(failed[0].mismatch).toMatch(/^expected ok, got SIGBUS \(read: SIGBUS at offset 16384 of the mapping\)$/);
  });

  it('on 6.11 the same file answers as the kernel did before host mmap: flags EINVAL, capability 0', async () => {
    const raw = load('guest-memfd-mmap.json') as { kernel: string; steps: Array<Record<string, unknown>> };
    raw.kernel = '6.11';
    const r = await runScenario(parseScenario(raw));
    expect(r.steps.slice(0, 3).map((s) => [s.op, s.result, s.value ?? null])).toEqual([
      ['check_extension', 'ok', 0],
      ['check_extension', 'ok', 0],
      ['create_guest_memfd', 'EINVAL', null],
    ]);
  });
});
