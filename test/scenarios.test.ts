// Issue 3 / item 10: scenario files. The PUNCH_HOLE-versus-fault leftover replayed exactly with
// pause points (deterministically), every example runs clean, and bad files are refused before
// anything runs, with errors that name the path and the rule.

import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tempDir } from './cli-helpers.js';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScenario } from '../src/vmm/scenario/runner.js';
import { ScenarioError, parseScenario } from '../src/vmm/scenario/schema.js';

const root = new URL('..', import.meta.url).pathname;
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
      });
      expect(r.ok).toBe(true);
    });
  }
});

describe('scenario validation', () => {
  /** A valid scenario whose third step each case replaces. */
  const base = (): { policy: string; memory: string; vms: unknown[]; steps: Array<Record<string, unknown>> } => ({
    policy: 'prepare-on-fault',
    memory: '16MiB',
    vms: [{ name: 'a', type: 'snp', vcpus: 1 }],
    steps: [
      { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '1MiB' },
      {
        op: 'set_user_memory_region2',
        vm: 'a',
        slot: 0,
        flags: ['guest_memfd'],
        guest_phys_addr: 0,
        memory_size: '1MiB',
        guest_memfd: 'g',
      },
      { op: 'set_memory_attributes', vm: 'a', address: 0, size: '1MiB', attributes: 'private' },
    ],
  });
  const problems = (raw: unknown): string[] => {
    try {
      parseScenario(raw);
    } catch (e) {
      expect(e).toBeInstanceOf(ScenarioError);
      return (e as ScenarioError).problems;
    }
    throw new Error('parseScenario accepted a bad scenario');
  };
  const withStep = (st: Record<string, unknown>, at = 2): unknown => {
    const s = base();
    s.steps[at] = st;
    return s;
  };

  it('accepts the base scenario', () => {
    expect(parseScenario(base()).steps).toHaveLength(3);
  });

  it('a bad size string: steps.2.size, with the accepted forms', () => {
    expect(problems(withStep({ op: 'create_guest_memfd', vm: 'a', as: 'h', size: '12 parsecs' }))).toEqual([
      'steps.2.size: must be a number, a hex string ("0x1000") or a size ("4KiB", "2MiB", "1GiB"), got "12 parsecs"',
    ]);
  });

  it('an unknown op: steps.2.op, with the known ops', () => {
    const [p, ...rest] = problems(withStep({ op: 'frobnicate', vm: 'a' }));
    expect(rest).toEqual([]);
    expect(p).toMatch(/^steps\.2\.op: unknown op "frobnicate"; expected one of create_guest_memfd, .*guest_read, .*parallel$/);
  });

  it('an unknown op inside parallel: the nested path, parallel not offered', () => {
    const [p, ...rest] = problems(withStep({ op: 'parallel', steps: [{ op: 'stats' }, { op: 'nap' }] }));
    expect(rest).toEqual([]);
    expect(p).toMatch(/^steps\.2\.steps\.1\.op: unknown op "nap"; expected one of .*stats$/);
  });

  it('an unknown field: its step and the key', () => {
    expect(problems(withStep({ op: 'close', fd: 'g', colour: 'red' }))).toEqual(['steps.2: Unrecognized key: "colour"']);
  });

  it('a VM not declared in vms', () => {
    expect(problems(withStep({ op: 'snp_launch_start', vm: 'zed' }))).toEqual(["steps.2.vm: no VM named 'zed' in vms"]);
  });

  it('a vCPU the VM does not have', () => {
    expect(problems(withStep({ op: 'guest_read', vm: 'a', vcpu: 1, gpa: 0, len: 4 }))).toEqual(["steps.2.vcpu: VM 'a' has 1 vCPU(s)"]);
  });

  it('an fd used before the step that creates it', () => {
    const s = base();
    s.steps.unshift({ op: 'close', fd: 'late' });
    s.steps.push({ op: 'create_guest_memfd', vm: 'a', as: 'late', size: '4KiB' });
    expect(problems(s)).toEqual(["steps.0.fd: no guest_memfd named 'late' was created by an earlier step"]);
  });

  it('an fd name created twice', () => {
    expect(problems(withStep({ op: 'create_guest_memfd', vm: 'a', as: 'g', size: '4KiB' }))).toEqual(["steps.2.as: 'g' is already used"]);
  });

  it('a bad policy, a bad pause point and an unknown top-level key are all reported at once', () => {
    const s = base() as Record<string, unknown> & ReturnType<typeof base>;
    s.policy = 'yolo';
    s.extra = true;
    s.steps[2] = { op: 'pause', point: 'nowhere' };
    const p = problems(s);
    expect(p).toHaveLength(3);
    expect(p).toContainEqual(
      expect.stringMatching(
        /^policy: Invalid option: expected one of "prepare-on-allocate"\|"prepare-on-fault"\|"prepare-on-fault-own-vm"$/,
      ),
    );
    expect(p).toContainEqual(expect.stringMatching(/^steps\.2\.point: Invalid option: expected one of "fault\.begin"\|/));
    expect(p).toContainEqual('(top level): Unrecognized key: "extra"');
  });

  it('a bad expected outcome names the outcomes allowed', () => {
    const [p] = problems(withStep({ op: 'close', fd: 'g', expect: 'EWHATEVER' }));
    expect(p).toMatch(/^steps\.2\.expect: Invalid option: expected one of "ok"\|.*"EINVAL"\|.*"memory_fault"\|/);
  });

  it('the CLI refuses a bad file with exit code 2 and runs nothing', () => {
    const dir = tempDir('gmem-scenario-');
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify(withStep({ op: 'create_guest_memfd', vm: 'a', as: 'h', size: '12 parsecs' })));
    const r = spawnSync(process.execPath, [join(root, 'bin/gmem-sandbox.js'), 'run', file], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('invalid scenario');
    expect(r.stderr).toContain('steps.2.size: must be a number');
    // No step ran: nothing was printed on stdout.
    expect(r.stdout).toBe('');
  });
});
