// 7.4's in-place conversion in the explorer (gmem_in_place_conversion=1): the default workload
// converts in the file both ways, pins pages through the VMM's mapping and releases them, faults
// them in from the host, and populates a launching VM in place, all clean over 300 schedules; each
// planted bug of the conversion is found at the seed measured for it (docs/explorer.md), with the
// invariant that names it; a saved schedule keeps the module parameter and replays; and
// --module-param is checked before anything runs.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { STACK, cli, tempDir } from '../helpers/cli-helpers.js';
import type { BugName } from '../../src/gmem/bugs.js';
import { VMM_OPS } from '../../src/vmm/workload/mix.js';
import { BUG_KERNELS, type ExploreConfig, Explorer, workloadFor } from '../../src/vmm/explore/explorer.js';
import { COVERAGE_EVENTS } from '../../src/vmm/explore/coverage.js';
import { parseSchedule } from '../../src/vmm/explore/schedule-file.js';
import { parseModuleParamArgs } from '../../src/cli/module-params.js';
import { runStress } from '../../src/vmm/stress/stress.js';
import { lockdepDependencies } from '../../src/shm/sync/lockdep.js';
import { INVARIANTS } from '../../src/checker/violations.js';

const IN_PLACE = { gmem_in_place_conversion: true };

function config(bug: BugName | null): ExploreConfig {
  return {
    kernel: '7.4',
    moduleParams: IN_PLACE,
    bug,
    strategy: 'random',
    depth: 3,
    maxSteps: 20_000,
    workload: workloadFor(bug),
  };
}

const explorers = new Map<string, Explorer>();
afterAll(async () => {
  await Promise.all([...explorers.values()].map((e) => e.close()));
});

/** One explorer per sandbox shape (pages per VM), its configuration set per test. */
function explorer(bug: BugName | null): Explorer {
  const cfg = config(bug);
  const key = String(cfg.workload.pages);
  let e = explorers.get(key);
  if (e === undefined) {
    e = new Explorer(cfg);
    explorers.set(key, e);
  }
  e.cfg = { ...cfg, workload: { ...cfg.workload } };
  return e;
}

describe('in-place conversion on 7.4 (gmem_in_place_conversion=1)', () => {
  it('300 schedules of the default workload are clean, and reach conversions both ways, pins, host faults and in-place populates', async () => {
    const e = explorer(null);
    const ops = Object.fromEntries(VMM_OPS.map((o) => [o, 0])) as Record<string, number>;
    const events = new Array<number>(COVERAGE_EVENTS.length).fill(0);
    for (let s = 1; s <= 300; s += 16) {
      const rs = await e.runSchedules(Array.from({ length: Math.min(16, 301 - s) }, (_, i) => s + i));
      for (const r of rs) {
        expect(r.violations, `seed ${r.seed}`).toEqual([]);
        expect(['ok', 'step-limit'], `seed ${r.seed}`).toContain(r.outcome);
        for (const o of VMM_OPS) ops[o] += r.ops[o];
        for (const i of r.coverage.events) events[i]++;
      }
    }
    // The ops of a kernel with the feature are drawn (counted with their errors: a pin of a
    // private page is EFAULT); the VM's attributes take no PRIVATE there, so 'convert' is not.
    expect([ops.convert2, ops.pin, ops.convert, ops.touch, ops.launch]).toEqual([61, 54, 0, 270, 64]);
    // Schedules that reached each event: a conversion, a refusal (EAGAIN, error_offset checked by
    // the op), the one LRU drain, a pin held, a host fault, an in-place or copied populate.
    const ev = (name: (typeof COVERAGE_EVENTS)[number]): number => events[COVERAGE_EVENTS.indexOf(name)];
    expect(
      ['conversions', 'conversionsRefused', 'lruDrains', 'gupPins', 'hostFaults', 'populatedPages'].map((n) => ev(n as never)),
    ).toEqual([225, 1, 7, 11, 125, 32]);
  }, 120_000);

  it('the conversion ops are never drawn on a kernel without the feature (7.0), nor on 7.4 with the parameter off', async () => {
    for (const [kernel, moduleParams] of [
      ['7.0', IN_PLACE],
      ['7.4', {}],
    ] as const) {
      const e = new Explorer({ ...config(null), kernel, moduleParams });
      try {
        const rs = await e.runSchedules(Array.from({ length: 16 }, (_, i) => i + 1));
        expect(rs.reduce((n, r) => n + r.ops.convert2 + r.ops.pin, 0)).toBe(0);
        expect(rs.reduce((n, r) => n + r.ops.convert, 0)).toBeGreaterThan(0);
      } finally {
        await e.close();
      }
    }
  }, 60_000);

  // The seeds measured with `explore --bug NAME --strategy random` (docs/explorer.md).
  it.each([
    ['convert-checks-refs-before-unmap', 174, 'hostIsolation', /is private yet pinned \(GUP\)/],
    ['convert-skips-lru-drain', 14, 'liveness', /refusal\(s\) \(EAGAIN\) of a folio whose only references .* LRU batches'/],
    ['convert-wrong-expected-refcount', 3, 'hostIsolation', /maps pfn \d+, private in the inode's attributes/],
    ['host-fault-skips-invalidate-lock', 40, 'hostIsolation', /maps pfn \d+, private in the inode's attributes/],
  ] as const)(
    '%s is found at seed %i',
    async (bug, seed, invariant, detail) => {
      expect(BUG_KERNELS[bug]).toEqual({ kernel: '7.4', moduleParams: IN_PLACE });
      const e = explorer(bug);
      const r = await e.runSchedule(seed);
      expect(r.outcome).toBe('violation');
      expect(r.violations[0].invariant).toBe(invariant);
      expect(r.violations[0].detail).toMatch(detail);
      // The same schedule without the bug is clean.
      e.cfg = { ...e.cfg, bug: null };
      expect((await e.runSchedule(seed)).violations).toEqual([]);
    },
    60_000,
  );

  it('lockdep sees mmap_lock -> invalidate lock -> mmu_lock from host faults and conversions, never the reverse', async () => {
    const e = explorer('host-fault-skips-invalidate-lock');
    e.cfg = { ...e.cfg, bug: null };
    const r = await e.runSchedule(1);
    expect([r.outcome, r.ops.convert2, r.ops.touch]).toEqual(['ok', 4, 2]);
    const deps = lockdepDependencies(e.mem()).map((d) => `${d.from} -> ${d.to}`);
    expect(deps).toContain('mm->mmap_lock -> mapping->invalidate_lock');
    expect(deps).toContain('mapping->invalidate_lock -> kvm->mmu_lock');
    for (const reverse of [
      'mapping->invalidate_lock -> mm->mmap_lock',
      'kvm->mmu_lock -> mapping->invalidate_lock',
      'kvm->mmu_lock -> mm->mmap_lock',
    ])
      expect(deps).not.toContain(reverse);
  }, 60_000);

  it('a saved schedule keeps the module parameter, and replays from its choices', async () => {
    const e = explorer('convert-skips-lru-drain');
    const r = await e.runSchedule(14);
    const file = parseSchedule(
      JSON.parse(
        JSON.stringify({ version: 1, config: e.cfg, seed: r.seed, choices: r.choices, outcome: r.outcome, violations: r.violations }),
      ),
    );
    expect(file.config.moduleParams).toEqual(IN_PLACE);
    expect(file.config.kernel).toBe('7.4');
    e.cfg = { ...file.config, strategy: 'replay' };
    const again = await e.runSchedule(file.seed, file.choices);
    expect(again.violations.map((v) => v.detail)).toEqual(r.violations.map((v) => v.detail));
    expect(() =>
      parseSchedule({ ...JSON.parse(JSON.stringify(file)), config: { ...file.config, moduleParams: { gmem_in_place: true } } }),
    ).toThrow(/config\.moduleParams: Unrecognized key: "gmem_in_place"/);
  }, 60_000);
});

describe('stress on 7.4 with gmem_in_place_conversion=1', () => {
  it('free-running threads convert in place, pin, fault from the host and punch: 0 violations', async () => {
    const r = await runStress({ kernel: '7.4', moduleParams: IN_PLACE, durationMs: 800, seed: 5, auditEveryMs: 500, memory: '16MiB' });
    expect(r.crashes).toEqual([]);
    expect(r.violations, JSON.stringify(r.violationDetails)).toEqual(Object.fromEntries(INVARIANTS.map((i) => [i, 0])));
    expect(r.config.moduleParams).toEqual(IN_PLACE);
    for (const op of ['convert2', 'pin', 'touch', 'punch'] as const) expect(r.vmmOps[op], op).toBeGreaterThan(0);
    for (const c of ['conversions', 'lruDrains', 'gupPins', 'hostFaults'] as const) expect(r.counters[c], c).toBeGreaterThan(0);
    expect(r.vmmOps.convert).toBe(0);
  }, 60_000);
});

describe('--module-param (modprobe syntax)', () => {
  it('explore and stress refuse a bad one with exit 2, naming the field and rule, before anything runs', async () => {
    const out = join(tempDir(), 'schedules');
    const [explore, stress] = await Promise.all([
      cli(['explore', '--kernel', '7.4', '--module-param', 'gmem_in_place_conversion=yes', '--out', out]),
      cli(['stress', '--kernel', '7.4', '--module-param', 'in_place=1', '--duration', '0.2']),
    ]);
    expect(explore.stderr).toMatch(/--module-param gmem_in_place_conversion: must be a bool \(1, 0, y, n, on, off\), got 'yes'/);
    expect(stress.stderr).toMatch(/--module-param: unknown kvm parameter 'in_place' in 'in_place=1'; known: gmem_in_place_conversion/);
    for (const r of [explore, stress]) {
      expect(r.status).toBe(2);
      expect(r.stderr).not.toMatch(STACK);
      expect(r.stdout).toBe('');
    }
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it('takes NAME=VALUE with kstrtobool words, and a bare NAME as 1', () => {
    expect(parseModuleParamArgs(['gmem_in_place_conversion=1'])).toEqual({ gmem_in_place_conversion: true });
    expect(parseModuleParamArgs(['gmem_in_place_conversion=N'])).toEqual({ gmem_in_place_conversion: false });
    expect(parseModuleParamArgs(['gmem_in_place_conversion'])).toEqual({ gmem_in_place_conversion: true });
  });

  it('refuses an unknown name, a value that is not a bool, and a name given twice, naming the field and rule', () => {
    expect(() => parseModuleParamArgs(['gmem_in_place=1'])).toThrow(
      "--module-param: unknown kvm parameter 'gmem_in_place' in 'gmem_in_place=1'; known: gmem_in_place_conversion",
    );
    expect(() => parseModuleParamArgs(['gmem_in_place_conversion=2'])).toThrow(
      "--module-param gmem_in_place_conversion: must be a bool (1, 0, y, n, on, off), got '2'",
    );
    expect(() => parseModuleParamArgs(['gmem_in_place_conversion=1', 'gmem_in_place_conversion=0'])).toThrow(
      "--module-param: 'gmem_in_place_conversion' is given twice",
    );
  });
});
