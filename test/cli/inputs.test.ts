// Every input validated before anything starts, naming the file, the field path and the rule:
// scenarios, saved schedules and stress options; and the limits that really hold (vCPU threads and
// slots: KVM_MAX_VCPUS per VM less the VMM's, 4 GiB of memory). The CLI's own contract.

import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { ScenarioError, ScheduleError } from '../../src/vmm/io/problems.js';
import { parseSchedule } from '../../src/vmm/explore/schedule-file.js';
import { resolveStressOptions } from '../../src/vmm/stress/stress.js';
import { VMM_OPS } from '../../src/vmm/workload/mix.js';
import { STACK, cli, root, tempDir } from '../helpers/cli-helpers.js';

const base = { policy: 'prepare-on-fault', memory: '4MiB', vms: [{ name: 'a', type: 'snp', vcpus: 1 }] };
function problems(raw: unknown): string[] {
  try {
    parseScenario(raw);
    return [];
  } catch (e) {
    if (!(e instanceof ScenarioError)) throw e;
    return e.problems;
  }
}

describe('scenario schema', () => {
  it('refuses negative sizes, lengths and addresses, except where the kernel takes a signed one (fallocate: loff_t)', async () => {
    const steps = [
      { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '1MiB' },
      { op: 'guest_read', vm: 'a', vcpu: 0, gpa: 0, len: -4 },
      { op: 'hwpoison', fd: 'g', offset: '-4096' },
      { op: 'fallocate', fd: 'g', mode: ['keep_size'], offset: '-4096', len: -1 },
    ];
    expect(problems({ ...base, steps })).toEqual([
      'steps.1.len: must not be negative, got -4',
      'steps.2.offset: must not be negative, got "-4096"',
    ]);
  });

  it('bounds what a step asks for: a guest read of more than 1MiB, a timeout past a minute, too many vCPUs', async () => {
    expect(problems({ ...base, steps: [{ op: 'guest_read', vm: 'a', vcpu: 0, gpa: 0, len: '2MiB' }] })).toEqual([
      'steps.0.len: must be at most 1048576 bytes (1MiB) per guest_read',
    ]);
    expect(problems({ ...base, steps: [{ op: 'await_held', point: 'fault.begin', timeout_ms: 3_600_000 }] })[0]).toMatch(
      /^steps\.0\.timeout_ms: Too big: expected number to be <=60000$/,
    );
    const vms = Array.from({ length: 2 }, (_, i) => ({ name: `v${i}`, type: 'snp', vcpus: 32 }));
    expect(problems({ ...base, vms, steps: [] })).toEqual([
      'vms: 64 vCPUs in all; at most 61 (one thread each, beside the controller, VMM and firmware)',
    ]);
  });

  it('run names the file, the field path and the rule, and starts nothing', async () => {
    const dir = tempDir();
    const file = join(dir, 's.json');
    writeFileSync(file, JSON.stringify({ ...base, steps: [{ op: 'guest_read', vm: 'a', vcpu: 0, gpa: 0, len: -4 }] }));
    const r = await cli(['run', file]);
    expect(r.stderr).toBe(`gmem-sandbox run: ${file}: invalid scenario:\n  steps.0.len: must not be negative, got -4\n`);
    expect(r.stdout).toBe('');
    expect(r.status).toBe(2);
  });

  it('a file with thousands of problems lists the first 20 and counts the rest', async () => {
    const dir = tempDir();
    const file = join(dir, 'many.json');
    writeFileSync(file, JSON.stringify({ ...base, steps: Array.from({ length: 5000 }, (_, i) => ({ op: `bogus${i}` })) }));
    const r = await cli(['run', file]);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(22);
    expect(lines[1]).toMatch(/^ {2}steps\.0\.op: unknown op "bogus0"; expected one of /);
    expect(lines[20]).toMatch(/^ {2}steps\.19\.op: unknown op "bogus19"/);
    expect(lines[21]).toBe('  ... and 4980 more problem(s) (5000 in all)');
    expect(r.status).toBe(2);
  });

  it('a step without expect fails when the harness timed out, instead of passing', async () => {
    const dir = tempDir();
    const file = join(dir, 's.json');
    writeFileSync(
      file,
      JSON.stringify({
        ...base,
        steps: [
          { op: 'pause', point: 'fault.begin', actor: { vm: 'a', vcpu: 0 } },
          { op: 'await_held', point: 'fault.begin', timeout_ms: 50 },
        ],
      }),
    );
    const r = await cli(['run', file]);
    expect(r.stdout).toMatch(/^FAIL \[1\] await_held -> ETIMEDOUT\n {7}ETIMEDOUT \(.*\), and the step has no expect that allows it$/m);
    expect(r.status).toBe(1);
  });
});

describe('saved schedules', () => {
  /** A schedule explore saved (test/fixtures: prepare-skips-clear at seed 1). */
  const good = () => ({
    dir: tempDir(),
    json: JSON.parse(readFileSync(join(root, 'test/fixtures/schedule-prepare-skips-clear.json'), 'utf8')),
  });

  it('parseSchedule accepts what explore saves and names every bad field', async () => {
    const { json } = good();
    expect(parseSchedule(json).seed).toBe(json.seed);
    const bad = {
      ...json,
      version: 2,
      seed: -1,
      choices: [1, 'x'],
      config: { ...json.config, workload: { ...json.config.workload, vcpus: 1000, ops: 'melt=1' } },
    };
    let err: ScheduleError | null = null;
    try {
      parseSchedule(bad);
    } catch (e) {
      err = e as ScheduleError;
    }
    expect(err).toBeInstanceOf(ScheduleError);
    expect(err?.problems).toEqual([
      'version: Invalid input: expected 1',
      'config.workload.vcpus: Too big: expected number to be <=8',
      `config.workload.ops: unknown operation 'melt'; known: ${VMM_OPS.join(', ')}`,
      'seed: Too small: expected number to be >=0',
      'choices.1: Invalid input: expected number, received string',
    ]);
  });

  it('replay refuses a corrupted or hand-edited schedule at once, with exit 2 and no stack trace', async () => {
    const { dir, json } = good();
    // More shapes of damage are checked in process above and by the fuzz test.
    const cases: Array<[unknown, RegExp]> = [
      [
        { ...json, config: { ...json.config, workload: { ...json.config.workload, vcpus: 1000 } } },
        /config\.workload\.vcpus: Too big: expected number to be <=8/,
      ],
    ];
    for (const [i, [body, re]] of cases.entries()) {
      const f = join(dir, `bad${i}.json`);
      writeFileSync(f, JSON.stringify(body));
      const r = await cli(['replay', f]);
      expect(r.stderr).toMatch(
        new RegExp(`^gmem-sandbox replay: ${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not a valid schedule file:\\n  `),
      );
      expect(r.stderr).toMatch(re);
      expect(r.stderr).not.toMatch(STACK);
      expect(r.status).toBe(2);
      expect(r.ms).toBeLessThan(5000);
    }
    const notJson = join(dir, 'torn.json');
    writeFileSync(notJson, '{"version": 1, "config"');
    const r = await cli(['replay', notJson]);
    expect(r.stderr).toMatch(new RegExp(`^gmem-sandbox replay: .*torn\\.json: not JSON: `));
    expect(r.status).toBe(2);
  });
});

describe('limits that really hold', () => {
  it('stress: vCPUs per VM leave one for the VMM, vCPU threads and slots are counted over all VMs', async () => {
    expect(resolveStressOptions({ vcpus: 31 }).vcpus).toBe(31);
    expect(() => resolveStressOptions({ vcpus: 32 })).toThrow(
      'vcpus: must be an integer from 1 to 31 (a VM has 32 vCPU ids and the VMM uses one to pre-fault), got 32',
    );
    expect(resolveStressOptions({ vms: 8, vcpus: 7 }).vms).toBe(8);
    expect(() => resolveStressOptions({ vms: 8, vcpus: 8 })).toThrow(
      'vcpus: vms x vcpus must be at most 61 vCPU threads (64 threads less the controller, VMM and firmware), got 8 x 8',
    );
    expect(() => resolveStressOptions({ vms: 5, vcpus: 12 })).toThrow(
      'vcpus: vms x (vcpus + 1) must be at most 64 vCPU slots (each VM also gives the VMM a vCPU), got 5 x 13',
    );
    expect(() => resolveStressOptions({ memory: '4GiB', guestMemory: '4GiB', vms: 2 })).toThrow(
      'guest-memory: guest-memory x VMs must be at most 4 GiB',
    );
  });

  it('the largest vCPU layout runs: 8 VMs x 7 vCPUs, all 64 vCPU slots', async () => {
    const r = await cli(['stress', '--vms', '8', '--vcpus', '7', '--duration', '0.3', '--seed', '5', '--audit-every', '0'], {
      timeoutMs: 120_000,
    });
    expect(r.stdout).toMatch(/^gmem-sandbox stress: PASS/);
    expect(r.status).toBe(0);
  }, 120_000);

  it('memory: 4GiB is the real maximum, checked before anything starts; a large set-up shows progress', async () => {
    const [over, big] = await Promise.all([
      cli(['stress', '--memory', '5GiB']),
      cli(['stress', '--memory', '256MiB', '--duration', '0.2', '--seed', '3']),
    ]);
    expect(over.stderr).toBe("gmem-sandbox stress: memory: at most 4 GiB (a typed array's limit in Node), got 5368709120 bytes\n");
    expect(over.status).toBe(2);
    expect(big.stderr).toMatch(/\[\.+\] +0% setting up 256 MiB of host memory/);
    expect(big.status).toBe(0);
  });

  it('stress runs the populate op with an SNP VM launching beside the others, which counts against the VM limit', async () => {
    expect(resolveStressOptions({ ops: 'punch=1,populate=2' }).ops).toBe('punch=1,populate=2');
    expect(resolveStressOptions({ vms: 8 }).vms).toBe(8);
    const r = await cli(['stress', '--vms', '8', '--ops', 'populate=1']);
    expect(r.stderr).toBe(
      'gmem-sandbox stress: vms: must be an integer from 1 to 7 (the populate op adds an SNP VM launching beside them), got 8\n',
    );
    expect(r.status).toBe(2);
  });

  it('the example scenarios still validate', async () => {
    for (const f of readdirSync(join(root, 'examples')))
      expect(() => parseScenario(JSON.parse(readFileSync(join(root, 'examples', f), 'utf8')))).not.toThrow();
  });
});
