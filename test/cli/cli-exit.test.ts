// The CLI's exit status per command: 0 pass, 1 a violation / bug not found / failed job, 2 a usage
// or input error (nothing ran), and every output path checked before any work starts. The CLI's own
// contract: no kernel function is modelled here.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InputError, checkOutputs, outputProblem } from '../../src/vmm/io/outputs.js';
import { type CliResult, STACK, bin, cli, root, start, tempDir } from '../helpers/cli-helpers.js';

const example = join(root, 'examples/private-fault-snp.json');
/** A schedule explore saved (prepare-skips-clear, found at seed 1), kept with the tests. */
const SCHEDULE = join(root, 'test/fixtures/schedule-prepare-skips-clear.json');

/** A scenario whose one step expects the wrong errno: it runs, and fails its expectation. */
const WRONG_EXPECT = {
  policy: 'prepare-on-fault',
  memory: '4MiB',
  vms: [{ name: 'a', type: 'snp', vcpus: 0 }],
  steps: [{ op: 'create_guest_memfd', vm: 'a', as: 'g', size: '1MiB', flags: 1, expect: 'ok' }],
};

function expectUsage(r: CliResult, message: RegExp): void {
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(STACK);
  expect(r.status).toBe(2);
}

// Each test starts its command lines at once (they are independent processes) and checks each.
describe('exit status per command', () => {
  it('stress: 0 on a clean run, 1 with a planted bug, 2 for a bad option or a limit', async () => {
    const [pass, fail, vcpus, bogus] = await Promise.all([
      cli(['stress', '--duration', '0.3', '--seed', '1']),
      cli(['stress', '--duration', '0.5', '--seed', '1', '--bug', 'prepare-skips-clear']),
      cli(['stress', '--vcpus', '0']),
      cli(['stress', '--bogus']),
    ]);
    expect(pass.stdout).toMatch(/^gmem-sandbox stress: PASS {2}\(seed 1\)/);
    expect(pass.status).toBe(0);
    expect(fail.stdout).toMatch(/^gmem-sandbox stress: FAIL/);
    expect(fail.status).toBe(1);
    expectUsage(vcpus, /--vcpus must be an integer from 1 to 31, got '0'/);
    expectUsage(bogus, /unknown option '--bogus'/);
  });

  it('run: 0 when every step matches, 1 when one does not, 2 for a missing or bad file', async () => {
    const dir = tempDir();
    const wrong = join(dir, 'wrong.json');
    writeFileSync(wrong, JSON.stringify(WRONG_EXPECT));
    const [pass, fail, nope] = await Promise.all([cli(['run', example]), cli(['run', wrong]), cli(['run', join(dir, 'nope.json')])]);
    expect(pass.status).toBe(0);
    expect(fail.stdout).toMatch(/^FAIL \[0\] create_guest_memfd -> EINVAL/m);
    expect(fail.status).toBe(1);
    expectUsage(nope, new RegExp(`^gmem-sandbox run: ${join(dir, 'nope.json')}: cannot read: ENOENT`, 'm'));
  });

  it('explore and replay: 0 when the bug is found and replayed, 1 when not found, 2 for bad input', async () => {
    const dir = tempDir();
    // The workload options given reach the saved schedule, so that it replays with them.
    const [found, notFound, ...usage] = await Promise.all([
      cli([
        'explore',
        '--bug',
        'prepare-skips-clear',
        '--ops',
        'punch=1,plainslot=1',
        '--vmm-threads',
        '1',
        '--multi-vm-share',
        '0',
        '--schedules',
        '5',
        '--no-shrink',
        '--out',
        dir,
      ]),
      cli(['explore', '--bug', 'fault-skips-seq-recheck', '--schedules', '1', '--no-shrink', '--out', dir]),
      cli(['explore', '--schedules', '0']),
      cli(['explore', '--ops', 'punch=1,melt=2']),
      cli(['explore', '--vmm-threads', '5']),
      cli(['explore', '--multi-vm-share', '1.5']),
    ]);
    expect(found.stdout).toMatch(/^prepare-skips-clear: FOUND after 1 schedule\(s\)/);
    expect(found.status).toBe(0);
    expect(notFound.stdout).toMatch(/^fault-skips-seq-recheck: not found in 1 schedule\(s\)/);
    expect(notFound.status).toBe(1);
    expectUsage(usage[0], /--schedules must be an integer from 1/);
    expectUsage(usage[1], /--ops: unknown operation 'melt'; known: punch, .*badbind.*oom/);
    expectUsage(usage[2], /--vmm-threads must be an integer from 1 to 4, got '5'/);
    expectUsage(usage[3], /--multi-vm-share must be a number from 0 to 1/);
    const saved = readdirSync(dir).filter((f) => f.startsWith('schedule-prepare-skips-clear'));
    expect(saved).toHaveLength(1);
    expect(JSON.parse(readFileSync(join(dir, saved[0]), 'utf8')).config.workload).toMatchObject({
      ops: 'punch=1,plainslot=1',
      vmmThreads: 1,
      multiVmShare: 0,
    });
    const replay = await cli(['replay', join(dir, saved[0]), '--trace', join(dir, 't.json')]);
    expect(replay.stdout).toMatch(/reproduced exactly/);
    expect(replay.status).toBe(0);
    // A schedule's trace says how many events it had no room for.
    expect(JSON.parse(readFileSync(join(dir, 't.json'), 'utf8')).metadata).toEqual({ droppedEvents: 0 });
  });

  it('explore --points: a planted bug is hunted in its own mode (shared for a window without a lock operation), saved with it, replayed; 2 for an unknown mode', async () => {
    const dir = tempDir();
    const [found, locks, bad] = await Promise.all([
      cli(['explore', '--bug', 'uptodate-after-folio-unlock', '--schedules', '100', '--no-shrink', '--json', '--out', dir]),
      cli([
        'explore',
        '--bug',
        'uptodate-after-folio-unlock',
        '--points',
        'locks',
        '--schedules',
        '20',
        '--no-shrink',
        '--json',
        '--out',
        dir,
      ]),
      cli(['explore', '--points', 'loom']),
    ]);
    const r = JSON.parse(found.stdout);
    expect(r.points).toBeNull();
    expect(r.results[0]).toMatchObject({ bug: 'uptodate-after-folio-unlock', points: 'shared', found: true });
    expect(found.status).toBe(0);
    expect(JSON.parse(locks.stdout).results[0]).toMatchObject({ points: 'locks', found: false, schedules: 20 });
    expect(locks.status).toBe(1);
    expectUsage(bad, /--points.*'loom' is invalid/);
    const saved = readdirSync(dir).filter((f) => f.startsWith('schedule-uptodate-after-folio-unlock'));
    expect(saved).toEqual([`schedule-uptodate-after-folio-unlock-7.0-random-shared-seed${r.results[0].seed}.json`]);
    expect(JSON.parse(readFileSync(join(dir, saved[0]), 'utf8')).config.points).toBe('shared');
    const replay = await cli(['replay', join(dir, saved[0])]);
    expect(replay.stdout).toMatch(/reproduced exactly/);
    expect(replay.status).toBe(0);
  });

  it('experiment multi-vm and policies: 0 on a run, 2 for a bad option', async () => {
    // --policy is an alias: the row is its kernel version's.
    const [r, vms, duration, kernel] = await Promise.all([
      cli(['experiment', 'multi-vm', '--duration', '0.2', '--policy', 'prepare-on-fault', '--pages', '16']),
      cli(['experiment', 'multi-vm', '--vms', '1']),
      cli(['experiment', 'policies', '--duration', '0']),
      cli(['experiment', 'policies', '--kernel', '6.12']),
    ]);
    expect(r.stdout).toMatch(/^kernel +faults +arch prepares +for other VMs/);
    expect(r.stdout).toMatch(/^b85524314a +32 +24 +12 /m);
    expect(r.status).toBe(0);
    expectUsage(vms, /--vms must be an integer from 2 to 8, got '1'/);
    expectUsage(duration, /--duration must be a number from 0.1 to 600, got '0'/);
    expectUsage(kernel, /argument '6.12' is invalid. Allowed choices are 6.10, b85524314a, 6.11, 6.18, 6.19, 7.0, 7.4, upstream, all/);
  });

  it('experiment conversion: exact counts as JSON, the report and the traces written; 2 for a bad option', async () => {
    const dir = tempDir();
    const quiet = ['experiment', 'conversion', '--conversions', '16', '--pages', '4', '--pin-ms', '0', '--no-faults', '--hold-pin', '0'];
    const [r, text, chunks, pin, kernel] = await Promise.all([
      cli([...quiet, '--json', '--report', join(dir, 'c.html'), '--trace', join(dir, 't.json')]),
      cli([...quiet, '--kernel', '7.4']),
      cli(['experiment', 'conversion', '--pages', '10', '--chunk', '4']),
      cli(['experiment', 'conversion', '--pin-ms', 'x']),
      cli(['experiment', 'conversion', '--kernel', '6.11']),
    ]);
    expect(r.status).toBe(0);
    const rows = JSON.parse(r.stdout) as Array<{ kernel: string; eagain: number; conversions: number; bytesCopied: number }>;
    expect(rows.map(({ kernel, eagain, conversions, bytesCopied }) => [kernel, eagain, conversions, bytesCopied])).toEqual([
      ['7.0', 0, 16, 16 * 4096],
      ['7.4', 4, 12, 0],
    ]);
    for (const f of ['c.html', 't.7.0.json', 't.7.4.json']) expect(existsSync(join(dir, f))).toBe(true);
    expect(text.stdout).toMatch(/^kernel +conversion +attempts +conversions\/s +EAGAIN/);
    expect(text.stdout).toMatch(/^7\.4 +in place \(ATTRIBUTES2\) +16 +[\d,]+ +4 +25\.00% +0 +0 /m);
    expect(text.status).toBe(0);
    expectUsage(chunks, /^gmem-sandbox experiment conversion: --pages: must be a whole number of chunks \(4 pages\), got 10$/m);
    expectUsage(pin, /--pin-ms: must be a number, got 'x'/);
    expectUsage(kernel, /argument '6.11' is invalid. Allowed choices are 7.0, 7.4, all/);
  });

  it('experiment multi-vm: --kernel and --policy that disagree are refused naming both, as stress does', async () => {
    const [one, all, stress] = await Promise.all([
      cli(['experiment', 'multi-vm', '--kernel', '6.18', '--policy', 'prepare-on-fault']),
      cli(['experiment', 'multi-vm', '--kernel', 'all', '--policy', 'all']),
      cli(['stress', '--kernel', '6.18', '--policy', 'prepare-on-fault']),
    ]);
    expectUsage(
      one,
      /^gmem-sandbox experiment multi-vm: policy: 'prepare-on-fault' is kernel b85524314a, which contradicts kernel '6.18'; give one of them$/m,
    );
    expectUsage(
      all,
      /^gmem-sandbox experiment multi-vm: policy: 'prepare-on-allocate', 'prepare-on-fault', 'prepare-on-fault-own-vm', 'prepare-on-every-fault' are kernels 6.10, b85524314a, 6.11, 7.0, which contradicts kernel 'all'; give one of them$/m,
    );
    expectUsage(
      stress,
      /^gmem-sandbox stress: policy: 'prepare-on-fault' is kernel b85524314a, which contradicts kernel '6.18'; give one of them$/m,
    );
  });

  it('sweep and merge: 0 all ok, 1 a failed job, 2 bad arguments or bad lines', async () => {
    const dir = tempDir();
    const out = join(dir, 'all.jsonl');
    const [ok, badParam] = await Promise.all([
      cli(['sweep', '--seeds', '0..1', '--param', 'duration=0.1', '--out', out, '--quiet']),
      cli(['sweep', '--param', 'cores=2']),
    ]);
    expect(ok.status).toBe(0);
    expectUsage(badParam, /--param cores=2: unknown parameter 'cores'/);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    const failing = join(dir, 'failing.jsonl');
    writeFileSync(
      failing,
      `${lines[0]}\n${JSON.stringify({ ...JSON.parse(lines[1]), ok: false, crashes: 1, error: 'vmm crashed: test' })}\n`,
    );
    const [mergedOk, merged] = await Promise.all([cli(['merge', out]), cli(['merge', failing])]);
    expect(mergedOk.status).toBe(0);
    expect(merged.stdout).toMatch(/^sweep \w+: FAIL {2}2 of 2 job\(s\) ran, 1 ok, 1 failing, 0 missing/);
    expect(merged.status).toBe(1);
  });

  it('usage errors stay usage errors: a bad --ops mix, an output the filesystem refuses (quickly, not a hang)', async () => {
    const [garbage, huge, proc] = await Promise.all([
      cli(['stress', '--ops', 'garbage']),
      cli(['stress', '--ops', 'punch=1e400']),
      cli(['explore', '--bug', 'prepare-skips-clear', '--out', '/proc/nope']),
    ]);
    expectUsage(garbage, /^gmem-sandbox stress: --ops: unknown operation 'garbage'; known: punch, /m);
    expectUsage(huge, /^gmem-sandbox stress: --ops: weight of 'punch' must be a finite non-negative number, got '1e400'/m);
    // /proc takes no new directory: mkdir fails, where Node's recursive mkdir spun forever.
    expectUsage(proc, /^gmem-sandbox explore: --out \/proc\/nope: cannot be written: mkdir \/proc\/nope failed \(ENOENT\)$/m);
    expect(proc.ms).toBeLessThan(4000);
  });

  it('--version; outputs named on stderr; failing schedules saved in ./schedules by default', async ({ onTestFinished }) => {
    const dir = tempDir('gmem-t-', onTestFinished);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    const [version, stress, found] = await Promise.all([
      cli(['--version']),
      cli(['stress', '--duration', '0.3', '--seed', '1', '--json', '--trace', join(dir, 't.json'), '--report', join(dir, 'r.html')]),
      cli(['explore', '--bug', 'prepare-skips-clear', '--schedules', '3', '--no-shrink'], { cwd: dir }),
    ]);
    expect(version.stdout).toBe(`${pkg.version}\n`);
    expect(version.status).toBe(0);
    // stdout stays the JSON report; where the files went is said on stderr.
    expect(JSON.parse(stress.stdout).ok).toBe(true);
    expect(stress.stderr).toContain(`gmem-sandbox stress: wrote the trace to ${join(dir, 't.json')}`);
    expect(stress.stderr).toContain(`gmem-sandbox stress: wrote the report to ${join(dir, 'r.html')}`);
    expect(found.status).toBe(0);
    expect(readdirSync(join(dir, 'schedules'))).toEqual(['schedule-prepare-skips-clear-7.0-random-seed1.json']);
  });

  it('help and unknown commands: 0 for --help (which states the convention), 2 for a bad command', async () => {
    const [help, sub, bad] = await Promise.all([cli(['--help']), cli(['experiment', 'multi-vm', '--help']), cli(['frobnicate'])]);
    for (const r of [help, sub]) {
      expect(r.stdout).toContain(
        'Exit status (every command):\n  0    pass\n  1    a violation, a planted bug not found, or a failed job\n  2    a usage or input error',
      );
      expect(r.stdout).toContain('130  interrupted');
      expect(r.status).toBe(0);
    }
    expectUsage(bad, /unknown command 'frobnicate'/);
  });

  it('a reader that closes the pipe early (| head -1): exit 0, no EPIPE stack trace', async () => {
    const r = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      // 800 kB of planned jobs: more than a pipe holds, so the CLI is still writing when it closes.
      const child = spawn(process.execPath, [bin, 'sweep', '--dry-run', '--seeds', '0..20000'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
      // One chunk read, then the pipe closed while the CLI still has lines to write.
      child.stdout.once('data', () => child.stdout.destroy());
      child.on('close', (status) => resolve({ status, stderr }));
    });
    expect(r.stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(r.stderr).not.toMatch(STACK);
    expect(r.status).toBe(0);
  });
});

// Two at a time (vitest.config: maxConcurrency): each is a process that mostly starts and stops.
describe.concurrent('output paths are checked before any work starts', () => {
  // `afile` is a file, so nothing can ever be created under it. A derived name (t.json ->
  // t.<policy>.json, t.<job>.json) is the one named.
  // One output option per command here: every option goes through the same check (checkOutputs),
  // whose rules the unit test below covers.
  const cases: Array<[string, string, (dir: string) => string[]]> = [
    ['stress', '--trace', (d) => ['stress', '--duration', '5', '--trace', join(d, 'afile/t.json')]],
    ['run', '--report', (d) => ['run', example, '--report', join(d, 'afile/r.html')]],
    ['explore', '--out', (d) => ['explore', '--bug', 'prepare-skips-clear', '--out', join(d, 'afile/schedules')]],
    ['replay', '--trace', (d) => ['replay', join(d, 'schedule.json'), '--trace', join(d, 'afile/t.json')]],
    ['experiment multi-vm', '--trace', (d) => ['experiment', 'multi-vm', '--duration', '5', '--trace', join(d, 'afile/t.json')]],
    ['experiment policies', '--report', (d) => ['experiment', 'policies', '--duration', '5', '--report', join(d, 'afile/r.html')]],
    ['experiment conversion', '--trace', (d) => ['experiment', 'conversion', '--duration', '5', '--trace', join(d, 'afile/t.json')]],
    ['sweep', '--trace', (d) => ['sweep', '--param', 'duration=5', '--trace', join(d, 'afile/t.json')]],
    ['merge', '--out', (d) => ['merge', join(d, 'in.jsonl'), '--out', join(d, 'afile/m.jsonl')]],
  ];
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

  it.for(cases)('%s %s: exit 2 at once, naming the option, the path and why, with nothing written', async ([command, flag, args], ctx) => {
    const { expect } = ctx;
    const dir = tempDir('gmem-t-', ctx.onTestFinished);
    writeFileSync(join(dir, 'afile'), '');
    writeFileSync(join(dir, 'in.jsonl'), '');
    writeFileSync(join(dir, 'schedule.json'), readFileSync(SCHEDULE));
    const r = await cli(args(dir));
    const afile = join(dir, 'afile');
    expectUsage(
      r,
      new RegExp(`^gmem-sandbox ${command}: ${flag} ${esc(afile)}/[\\w.-]+: cannot be written: ${esc(afile)} is not a directory$`, 'm'),
    );
    expect(r.stdout).toBe('');
    // Refused before the 5 s of work (and before any worker started).
    expect(r.ms).toBeLessThan(4000);
    expect(readdirSync(dir).sort()).toEqual(['afile', 'in.jsonl', 'schedule.json']);
  });

  it('the rules: a file under a file, a directory as a file, a file as a directory, missing parents', async ({
    expect,
    onTestFinished,
  }) => {
    const dir = tempDir('gmem-t-', onTestFinished);
    writeFileSync(join(dir, 'afile'), '');
    expect(outputProblem(join(dir, 'afile/t.json'), 'file')).toBe(`${join(dir, 'afile')} is not a directory`);
    expect(outputProblem(join(dir, 'afile/x/y/t.json'), 'file')).toBe(`${join(dir, 'afile')} is not a directory`);
    expect(outputProblem(dir, 'file')).toBe('is a directory, not a file');
    expect(outputProblem(join(dir, 'afile'), 'dir')).toBe('exists and is not a directory');
    expect(outputProblem(join(dir, 'new/deeper/t.json'), 'file')).toBeNull();
    expect(outputProblem(join(dir, 'afile'), 'file')).toBeNull();
    expect(() => checkOutputs([undefined, { flag: '--summary', path: join(dir, 'afile/s.json'), kind: 'file' }])).toThrow(
      new InputError(`--summary ${join(dir, 'afile/s.json')}: cannot be written: ${join(dir, 'afile')} is not a directory`),
    );
  });

  it('a write that fails after the run keeps the result and its status, and says what was not written', async ({
    expect,
    onTestFinished,
  }) => {
    const dir = tempDir('gmem-t-', onTestFinished);
    const sub = join(dir, 'sub');
    const r = start(process.execPath, [
      join(root, 'bin/gmem-sandbox.js'),
      'stress',
      '--duration',
      '1',
      '--seed',
      '2',
      '--trace',
      join(sub, 't.json'),
    ]);
    // The first progress line comes once the output paths were checked: the run is under way, and
    // the trace is written at its end.
    await r.waitFor(/setting up/);
    // The trace's directory becomes a file while the run goes on.
    rmSync(sub, { recursive: true, force: true });
    writeFileSync(sub, 'in the way');
    const e = await r.exited;
    expect(r.stdout()).toMatch(/^gmem-sandbox stress: PASS {2}\(seed 2\)/);
    expect(r.stderr()).toMatch(new RegExp(`gmem-sandbox: not written: ${join(sub, 't.json')}: `));
    expect(existsSync(join(sub, 't.json'))).toBe(false);
    expect(e.status).toBe(0);
  }, 90_000);
});

describe('catalogue: the bugs the model cannot express', () => {
  it('are printed with why (text and JSON), and explore --catalogue refuses them with exit 2', async () => {
    const [text, json, refused] = await Promise.all([
      cli(['catalogue']),
      cli(['catalogue', '--json']),
      cli(['explore', '--catalogue', 'gmem-thp-collapse']),
    ]);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(
      /gmem-shared-invalidation\n.*\n {2}buggy: 6\.18-rc1 only; no release had it; fixed by 5d3341d684be .*\n {2}cannot be expressed in this model: .*kvm_gfn_range_filter_to_root_types returns KVM_DIRECT_ROOTS/,
    );
    expect(text.stdout).toMatch(/gmem-thp-collapse\n(.*\n){2} {2}cannot be expressed in this model: the model has order-0 folios only/);
    const entries = JSON.parse(json.stdout) as Array<{ id: string; expressible: boolean; why?: string }>;
    expect(entries.filter((e) => !e.expressible).map((e) => e.id)).toEqual(['gmem-shared-invalidation', 'gmem-thp-collapse']);
    expect(entries.filter((e) => e.expressible).map((e) => e.id)).toContain('prefault-memslot-deadlock');
    expectUsage(refused, /--catalogue.*gmem-thp-collapse.*(invalid|choices)/i);
  });
});
