// Sweep planning, no workers (vmm/sweep): the cartesian product of --param values in a fixed
// order with seeds innermost, seed ranges and lists, shards (job i to shard i % N) that partition
// the plan, and mergeLines: duplicates, a failing copy kept over an ok one, missing jobs, and
// file:line for a bad line. The tool's own logic: no kernel function is modelled here.

import { describe, expect, it } from 'vitest';
import { POLICIES } from '../../src/gmem/policy.js';
import { parseShard } from '../../src/vmm/io/shard.js';
import type { SweepLine } from '../../src/vmm/sweep/line.js';
import { inputLines, mergeLines } from '../../src/vmm/sweep/merge.js';
import { parseParam, parseSeeds, rerunCommand } from '../../src/vmm/sweep/params.js';
import { planSweep, shardPlan } from '../../src/vmm/sweep/plan.js';

describe('sweep planning', () => {
  it('builds the cartesian product in a fixed parameter order, seeds innermost', () => {
    const plan = planSweep({ params: ['vcpus=1,2', 'policy=all'], seeds: '0..1' });
    expect(plan.total).toBe(2 * POLICIES.length * 2);
    expect(plan.jobs.map((j) => j.index)).toEqual([...Array(16).keys()]);
    // policy nests outside vcpus whatever the flag order; seeds vary fastest.
    expect(plan.jobs.slice(0, 5)).toEqual([
      { index: 0, seed: 0, params: { policy: POLICIES[0], vcpus: 1 } },
      { index: 1, seed: 1, params: { policy: POLICIES[0], vcpus: 1 } },
      { index: 2, seed: 0, params: { policy: POLICIES[0], vcpus: 2 } },
      { index: 3, seed: 1, params: { policy: POLICIES[0], vcpus: 2 } },
      { index: 4, seed: 0, params: { policy: POLICIES[1], vcpus: 1 } },
    ]);
    const reordered = planSweep({ params: ['policy=all', 'vcpus=1,2'], seeds: '0..1' });
    expect(reordered.jobs).toEqual(plan.jobs);
    expect(reordered.id).toBe(plan.id);
    expect(planSweep({ params: ['vcpus=1,2'], seeds: '0..1' }).id).not.toBe(plan.id);
  });

  it('parses values: numbers as numbers, aliases, all, durations, op mixes', () => {
    expect(parseParam('vm-type=all')).toEqual({ name: 'vmType', values: ['snp', 'sw-protected'] });
    expect(parseParam('vmType=snp')).toEqual({ name: 'vmType', values: ['snp'] });
    expect(parseParam('pattern=all').values).toEqual(['sequential', 'random', 'hot']);
    expect(parseParam('write-ratio=0,0.5,1')).toEqual({ name: 'writeRatio', values: [0, 0.5, 1] });
    expect(parseParam('duration=0.5,2')).toEqual({ name: 'durationMs', values: [500, 2000] });
    expect(parseParam('durationMs=300')).toEqual({ name: 'durationMs', values: [300] });
    expect(parseParam('memory=16MiB,33554432')).toEqual({ name: 'memory', values: ['16MiB', 33554432] });
    expect(parseParam('ops=punch=3,convert=1;prefault=1')).toEqual({ name: 'ops', values: ['punch=3,convert=1', 'prefault=1'] });
    expect(parseParam('op-rate=0,500').values).toEqual([0, 500]);
  });

  it('parses seeds: inclusive ranges, lists and mixes', () => {
    expect(parseSeeds('0..4')).toEqual([0, 1, 2, 3, 4]);
    expect(parseSeeds('7')).toEqual([7]);
    expect(parseSeeds('3,1,2')).toEqual([3, 1, 2]);
    expect(parseSeeds('0..2,10')).toEqual([0, 1, 2, 10]);
    expect(parseSeeds([5, 6])).toEqual([5, 6]);
    expect(planSweep({}).jobs).toEqual([{ index: 0, seed: 0, params: {} }]);
  });

  it('checks each combination against the sandbox limits at planning, before any job starts', () => {
    expect(() => planSweep({ params: ['memory=64MiB,8GiB'] })).toThrow(/combination memory=8GiB: memory: at most 4 GiB/);
  });

  it('rejects bad parameters, seeds and shards with the rule', () => {
    expect(() => parseParam('cores=2')).toThrow(/--param cores=2: unknown parameter 'cores'; known: vcpus/);
    expect(() => parseParam('seed=1')).toThrow(/use --seeds/);
    expect(() => parseParam('vcpus')).toThrow(/expected name=value/);
    expect(() => parseParam('vcpus=0')).toThrow(/vcpus must be an integer from 1 to 31, got '0'/);
    expect(() => parseParam('vcpus=1.5')).toThrow(/integer/);
    expect(() => parseParam('vcpus=1,,2')).toThrow(/empty value/);
    expect(() => parseParam('vcpus=1,1')).toThrow(/listed twice/);
    expect(() => parseParam('vcpus=all')).toThrow(/'all' is only accepted for kernel, policy, vm-type and pattern/);
    expect(() => parseParam('policy=prepare-sometimes')).toThrow(/policy must be one of prepare-on-allocate/);
    expect(() => parseParam('vm-type=tdx')).toThrow(/vm-type must be one of snp, sw-protected or all, got 'tdx'/);
    expect(() => parseParam('write-ratio=2')).toThrow(/write-ratio must be a number from 0 to 1/);
    expect(() => parseParam('memory=lots')).toThrow(/memory must be a positive size/);
    expect(() => parseParam('guest-memory=5000')).toThrow(/multiple of 4KiB/);
    expect(() => parseParam('ops=smash=1')).toThrow(/ops must be an operation mix.*unknown operation 'smash'/);
    expect(() => planSweep({ params: ['vcpus=1', 'vcpus=2'] })).toThrow(/already given/);
    expect(() => planSweep({ params: ['duration=1', 'duration-ms=500'] })).toThrow(/already given/);
    // A combination that stress itself refuses, caught before anything runs.
    expect(() => planSweep({ params: ['memory=4MiB', 'guest-memory=8MiB'] })).toThrow(
      /combination memory=4MiB guestMemory=8MiB: guest-memory/,
    );

    expect(() => parseSeeds('5..2')).toThrow(/range end 2 is below its start 5/);
    expect(() => parseSeeds('a..3')).toThrow(/'a' is not a seed/);
    expect(() => parseSeeds('-1')).toThrow(/not a seed/);
    expect(() => parseSeeds('1,1')).toThrow(/listed twice/);
    expect(() => parseSeeds('1,,2')).toThrow(/empty item/);

    expect(parseShard('0/4')).toEqual({ k: 0, n: 4 });
    expect(parseShard('3/4')).toEqual({ k: 3, n: 4 });
    expect(() => parseShard('4/4')).toThrow(/K is 0-based and must be from 0 to 3/);
    expect(() => parseShard('1/0')).toThrow(/N must be an integer of at least 1/);
    expect(() => parseShard('1-4')).toThrow(/expected K\/N/);
    expect(() => parseShard('-1/4')).toThrow(/expected K\/N/);
  });
});

describe('sharding', () => {
  it('splits the plan into disjoint shards whose union is the whole plan', () => {
    const plan = planSweep({ params: ['policy=all', 'vm-type=all'], seeds: '0..16' });
    expect(plan.total).toBe(136);
    for (const n of [1, 2, 3, 7, 200]) {
      const shards = [...Array(n).keys()].map((k) =>
        planSweep({ params: ['policy=all', 'vm-type=all'], seeds: '0..16', shard: `${k}/${n}` }),
      );
      const all = shards.flatMap((s) => s.jobs.map((j) => j.index));
      expect(new Set(all).size).toBe(all.length);
      expect(all.sort((a, b) => a - b)).toEqual(plan.jobs.map((j) => j.index));
      for (const s of shards) {
        expect(s.total).toBe(plan.total);
        expect(s.id).toBe(plan.id);
        for (const j of s.jobs) expect(j).toEqual(plan.jobs[j.index]);
      }
    }
    expect(
      shardPlan(plan, { k: 1, n: 4 })
        .jobs.map((j) => j.index)
        .slice(0, 3),
    ).toEqual([1, 5, 9]);
  });
});

function line(index: number, seed: number, params: Record<string, string | number>, over: Partial<SweepLine> = {}): SweepLine {
  return {
    plan: 'p1',
    total: 6,
    index,
    seed,
    params,
    ok: true,
    faultsPerSecond: 100,
    violations: { staleData: 0, rmpAgreement: 0, hostIsolation: 0, useAfterFree: 0, dataLost: 0, balance: 0, liveness: 0 },
    findings: { punchHoleLeftovers: 0, crossVmPrepare: 0 },
    counters: { faults: 10 },
    elapsedMs: 1000,
    crashes: 0,
    ...over,
  };
}

describe('mergeLines', () => {
  const a = { policy: 'prepare-on-allocate' };
  const b = { policy: 'prepare-on-fault' };
  const lines = [
    line(0, 0, a, { faultsPerSecond: 100 }),
    line(1, 1, a, { faultsPerSecond: 300 }),
    line(2, 2, a, { faultsPerSecond: 200, ok: false, violations: { ...line(0, 0, a).violations, staleData: 3, balance: 1 } }),
    line(3, 0, b, { faultsPerSecond: 50 }),
    line(4, 1, b, { faultsPerSecond: 70, ok: false, crashes: 1, error: 'vmm crashed: boom' }),
    line(5, 2, b, { faultsPerSecond: 60 }),
  ];
  const shard0 = [lines[0], lines[2], lines[4]].map((l) => JSON.stringify(l));
  const shard1 = [lines[5], lines[3], lines[1], lines[1]].map((l) => JSON.stringify(l));

  it('de-duplicates, sorts and summarises per combination', () => {
    const s = mergeLines([...inputLines('s1.jsonl', `${shard1.join('\n')}\n`), ...inputLines('s0.jsonl', shard0.join('\n'))]);
    expect(s.lines.map((l) => l.index)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(s).toMatchObject({ plan: 'p1', total: 6, runs: 6, ok: 4, duplicates: 1, missing: [] });
    expect(s.combinations).toHaveLength(2);
    expect(s.combinations[0]).toMatchObject({ params: a, runs: 3, ok: 2, faultsPerSecond: { mean: 200, min: 100, max: 300 }, crashes: 0 });
    expect(s.combinations[0].violations).toMatchObject({ staleData: 3, balance: 1, dataLost: 0 });
    expect(s.combinations[1]).toMatchObject({ params: b, runs: 3, ok: 2, faultsPerSecond: { mean: 60, min: 50, max: 70 }, crashes: 1 });
    expect(s.failures).toEqual([
      { index: 2, seed: 2, params: a, violations: { staleData: 3, balance: 1 }, crashes: 0, rerun: rerunCommand(a, 2) },
      { index: 4, seed: 1, params: b, violations: {}, crashes: 1, error: 'vmm crashed: boom', rerun: rerunCommand(b, 1) },
    ]);
    expect(rerunCommand(a, 2)).toBe('gmem-sandbox stress --seed 2 --policy prepare-on-allocate --duration 1 --audit-every 500');
    expect(rerunCommand({ vmType: 'snp', durationMs: 300, ops: 'punch=1,convert=2' }, 9)).toBe(
      'gmem-sandbox stress --seed 9 --vm-type snp --duration 0.3 --ops punch=1,convert=2 --audit-every 500',
    );
  });

  it('keeps a failing copy of a job over an ok one', () => {
    const okCopy = JSON.stringify({ ...lines[2], ok: true, violations: lines[0].violations });
    for (const order of [
      [okCopy, shard0[1]],
      [shard0[1], okCopy],
    ]) {
      const s = mergeLines(order);
      expect(s).toMatchObject({ runs: 1, ok: 0, duplicates: 1 });
      expect(s.failures.map((f) => f.index)).toEqual([2]);
    }
  });

  it('reports missing jobs of an incomplete campaign', () => {
    const s = mergeLines(shard0);
    expect(s.runs).toBe(3);
    expect(s.missing).toEqual([1, 3, 5]);
  });

  it('names file:line of a bad line', () => {
    const bad = [...inputLines('s0.jsonl', `${shard0[0]}\n\n{"index": 1`), ...inputLines('s1.jsonl', shard1[0])];
    expect(() => mergeLines(bad)).toThrow(/^s0\.jsonl:3: not JSON/);
    expect(() => mergeLines(inputLines('x.jsonl', `${shard0[0]}\n${JSON.stringify({ ...lines[1], faultsPerSecond: 'fast' })}`))).toThrow(
      /^x\.jsonl:2: not a sweep line: faultsPerSecond: /,
    );
    expect(() => mergeLines([shard0[0], JSON.stringify({ ...lines[1], plan: 'other' })])).toThrow(
      /<input>:2: from plan other .* shards of different sweeps/,
    );
    expect(() => mergeLines([shard0[0], JSON.stringify({ ...lines[0], seed: 9 })])).toThrow(/<input>:2: job 0 has seed 9/);
    expect(() => mergeLines([JSON.stringify({ ...lines[0], index: 6 })])).toThrow(/beyond the plan's 6 jobs/);
  });
});
