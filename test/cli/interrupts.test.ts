// SIGINT and SIGTERM, sent to a real child process (and through npx): the run stops within about
// a second, prints its partial result marked interrupted, exits 130 and leaves no process behind; an
// interrupted sweep keeps its finished lines and --resume runs only the rest. The CLI's own
// contract: no kernel function is modelled here.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { INVARIANTS } from '../../src/checker/violations.js';
import { lineFromReport } from '../../src/vmm/sweep/line.js';
import { planSweep } from '../../src/vmm/sweep/plan.js';
import { STACK, bin, cli, start, tempDir } from '../helpers/cli-helpers.js';

/** Processes whose command line holds `marker` (Linux /proc). */
function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ').includes(marker)) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * The CLI stops within 1 s (its own hard deadline is 1 s after the signal); the tests allow the
 * scheduling delays of a loaded 2-core machine on top.
 */
const STOP_MS = 2000;

/** A unique seed marks the processes of one test. */
const marker = () => String(3_000_000_000 + Math.floor(Math.random() * 1_000_000_000));

// A running stress shows it is under way only by its progress line (every 2 s off a terminal):
// these four wait for it two at a time, each on its own child (vitest.config: maxConcurrency).
describe.concurrent('interrupts of a running stress', () => {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    it(`${sig} stops stress within 1 s: partial result marked interrupted, exit 130, no worker left`, async ({ expect }) => {
      const seed = marker();
      const r = start(process.execPath, [bin, 'stress', '--duration', '60', '--vcpus', '1', '--seed', seed]);
      await r.waitFor(/faults [1-9]/);
      const sent = r.kill(sig);
      const e = await r.exited;
      expect(e.at - sent).toBeLessThan(STOP_MS);
      expect(r.stdout()).toMatch(
        new RegExp(`^gmem-sandbox stress: INTERRUPTED after \\d+\\.\\d s \\(partial result\\) {2}\\(seed ${seed}\\)`),
      );
      expect(r.stdout()).toMatch(/^ {2}faults +[1-9]/m);
      expect(r.stderr()).toContain(`gmem-sandbox stress: ${sig}: stopping, the partial result follows`);
      expect(e.status).toBe(130);
      expect(processesWith(seed)).toEqual([]);
    });
  }

  it('stress --json marks the partial report interrupted', async ({ expect }) => {
    const r = start(process.execPath, [bin, 'stress', '--duration', '60', '--vcpus', '1', '--json']);
    await r.waitFor(/faults [1-9]/);
    r.kill('SIGINT');
    const e = await r.exited;
    const report = JSON.parse(r.stdout());
    expect(report.interrupted).toBe(true);
    expect(report.ok).toBe(false);
    expect(report.counters.faults).toBeGreaterThan(0);
    expect(e.status).toBe(130);
  });

  // A project whose local bin is gmem-sandbox: npx runs it as `npm exec` -> `sh -c` -> node, the
  // chain a user gets, without installing anything. npm passes a signal to the shell only.
  const viaNpx = (dir: string, seed: string) => {
    writeFileSync(join(dir, 'package.json'), '{"name": "npx-probe", "private": true}');
    mkdirSync(join(dir, 'node_modules/.bin'), { recursive: true });
    symlinkSync(bin, join(dir, 'node_modules/.bin/gmem-sandbox'));
    return start('npx', ['--no-install', 'gmem-sandbox', 'stress', '--duration', '60', '--vcpus', '1', '--seed', seed], { cwd: dir });
  };

  it('SIGTERM to npx stops the run it started (npx exits; the run sees its launcher gone)', async ({ expect, onTestFinished }) => {
    const seed = marker();
    const r = viaNpx(tempDir('gmem-t-', onTestFinished), seed);
    await r.waitFor(/faults [1-9]/);
    expect(processesWith(seed).length).toBeGreaterThanOrEqual(2);
    const sent = r.kill('SIGTERM');
    await r.exited;
    // npx itself exits at once; the simulator it started must be gone within about a second.
    const end = sent + 3000;
    while (processesWith(seed).length > 0 && performance.now() < end) await new Promise((res) => setTimeout(res, 50));
    expect(processesWith(seed)).toEqual([]);
    expect(performance.now() - sent).toBeLessThan(STOP_MS);
    expect(r.stderr()).toMatch(/gmem-sandbox stress: SIGTERM \(npx or npm exited\): stopping/);
    // The result comes from the orphaned simulator, after npx has gone: give the pipe a moment.
    while (!/INTERRUPTED after/.test(r.stdout()) && performance.now() < sent + 3000) await new Promise((res) => setTimeout(res, 50));
    expect(r.stdout()).toMatch(/INTERRUPTED after/);
  });

  it('SIGINT to npx stops the run it started (npx stays; the shell it passed the signal to wakes)', async ({ expect, onTestFinished }) => {
    const seed = marker();
    const r = viaNpx(tempDir('gmem-t-', onTestFinished), seed);
    await r.waitFor(/faults [1-9]/);
    const sent = r.kill('SIGINT');
    const e = await r.exited;
    expect(e.at - sent).toBeLessThan(STOP_MS);
    expect(r.stderr()).toMatch(/gmem-sandbox stress: SIGINT \(passed by npx to its shell\): stopping/);
    expect(r.stdout()).toMatch(/INTERRUPTED after/);
    expect(processesWith(seed)).toEqual([]);
  });

  it('GNU timeout (a signal to the process and its group, so two at once) ends with the partial result', async ({ expect }) => {
    const seed = marker();
    const r = start('timeout', ['3', process.execPath, bin, 'stress', '--duration', '30', '--vcpus', '1', '--seed', seed]);
    const e = await r.exited;
    // timeout's own status when it had to signal; the run printed its result before exiting.
    expect(e.status).toBe(124);
    expect(r.stdout()).toMatch(
      new RegExp(`^gmem-sandbox stress: INTERRUPTED after \\d+\\.\\d s \\(partial result\\) {2}\\(seed ${seed}\\)`),
    );
    expect(r.stdout()).toMatch(/^ {2}faults +[1-9]/m);
    expect(r.stderr().match(/stopping, the partial result follows/g)).toHaveLength(1);
    expect(processesWith(seed)).toEqual([]);
  });

  it('two signals within a moment count as one; a later one ends the process at once', async ({ expect }) => {
    const seed = marker();
    const r = start(process.execPath, [bin, 'stress', '--duration', '60', '--vcpus', '1', '--seed', seed]);
    await r.waitFor(/faults [1-9]/);
    r.kill('SIGINT');
    r.kill('SIGTERM');
    const e = await r.exited;
    expect(e.status).toBe(130);
    expect(r.stdout()).toMatch(/INTERRUPTED after/);
  });
});

describe('interrupts', () => {
  it('run: an interrupt during a held pause stops at once with the steps so far', async () => {
    const dir = tempDir();
    const file = join(dir, 'hold.json');
    // A pause armed for a vCPU that runs nothing, and an await on it: 30 s of waiting.
    writeFileSync(
      file,
      JSON.stringify({
        policy: 'prepare-on-fault',
        memory: '4MiB',
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
          { op: 'pause', point: 'fault.begin', actor: { vm: 'a', vcpu: 0 } },
          { op: 'await_held', point: 'fault.begin', timeout_ms: 30000 },
        ],
      }),
    );
    const r = start(process.execPath, [bin, 'run', file]);
    await r.waitFor(/setting up/);
    // Set up and through the first three steps, it waits in the fourth: the process goes idle.
    await r.waitIdle();
    const sent = r.kill('SIGINT');
    const e = await r.exited;
    expect(e.at - sent).toBeLessThan(STOP_MS);
    expect(e.status).toBe(130);
    expect(r.stdout()).toMatch(/^ ok {2}\[0\] create_guest_memfd -> ok/m);
    expect(r.stdout()).toMatch(/^audit: not run \(interrupted\)$/m);
    expect(r.stdout()).toMatch(/INTERRUPTED after 4 step\(s\) \(partial result\)$/m);
  });

  it('sweep: an interrupt keeps the finished lines, and --resume runs only the missing jobs', async () => {
    const dir = tempDir();
    const out = join(dir, 'all.jsonl');
    const args = ['sweep', '--seeds', '0..2', '--param', 'duration=0.1', '--out', out];
    const r = start(process.execPath, [bin, ...args]);
    // Wait for a finished job, then interrupt the next.
    const end = Date.now() + 30_000;
    while ((existsSync(out) ? readFileSync(out, 'utf8').split('\n').length - 1 : 0) < 1 && Date.now() < end)
      await new Promise((res) => setTimeout(res, 50));
    const sent = r.kill('SIGINT');
    const e = await r.exited;
    expect(e.at - sent).toBeLessThan(STOP_MS);
    expect(e.status).toBe(130);
    expect(r.stderr()).toMatch(/INTERRUPTED: \d of 3 job\(s\) finished in this run; rerun with --resume/);
    // The summary of what finished, marked as such, not a PASS.
    expect(r.stderr()).toMatch(/^sweep [0-9a-f]+: INTERRUPTED {2}\d of 3 job\(s\) ran/m);
    const kept = readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).index as number);
    expect(kept.length).toBeGreaterThanOrEqual(1);
    expect(kept.length).toBeLessThan(3);

    const resumed = await cli([...args, '--resume']);
    expect(resumed.stderr).toContain(`resuming: ${kept.length} of this shard's 3 job(s) already in ${out}, ${3 - kept.length} to run`);
    expect(resumed.status).toBe(0);
    const all = readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).index as number);
    // Every job once: the earlier lines kept, the rest appended.
    expect(all.slice(0, kept.length)).toEqual(kept);
    expect([...all].sort()).toEqual([0, 1, 2]);
    const merged = await cli(['merge', out]);
    expect(merged.stdout).toMatch(/PASS {2}3 of 3 job\(s\) ran, 3 ok, 0 failing, 0 missing/);
  }, 90_000);

  it('sweep --out is locked: a second sweep into the same file is refused with exit 2 naming the first', async () => {
    const dir = tempDir();
    const out = join(dir, 'both.jsonl');
    const first = start(process.execPath, [bin, 'sweep', '--seeds', '0..1', '--param', 'duration=0.5', '--out', out]);
    const end = Date.now() + 20_000;
    while (!existsSync(`${out}.lock`) && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
    const second = await cli(['sweep', '--seeds', '5..6', '--param', 'duration=0.5', '--out', out]);
    expect(second.status).toBe(2);
    expect(second.stderr).toContain(`gmem-sandbox sweep: --out ${out}: in use by another run (pid ${first.pid}`);
    const e = await first.exited;
    expect(e.status).toBe(0);
    expect(existsSync(`${out}.lock`)).toBe(false);
    // One plan's lines only, so merge takes the file.
    const merged = await cli(['merge', out]);
    expect(merged.stdout).toMatch(/PASS {2}2 of 2 job\(s\) ran/);
  }, 60_000);

  it('sweep --out refuses a file of another sweep and drops a torn last line', async () => {
    const dir = tempDir();
    const out = join(dir, 'o.jsonl');
    // A finished job's line, as a sweep of that plan writes it.
    const plan = planSweep({ params: ['duration=0.2'], seeds: '0' });
    const report = {
      ok: true,
      faultsPerSecond: 1,
      violations: Object.fromEntries(INVARIANTS.map((i) => [i, 0])),
      findings: { punchHoleLeftovers: 0, crossVmPrepare: 0 },
      counters: {},
      elapsedMs: 1,
      crashes: [],
    };
    const before = `${JSON.stringify(lineFromReport({ plan: plan.id, total: 1, ...plan.jobs[0] }, report as never))}\n`;
    writeFileSync(out, before);
    const other = await cli(['sweep', '--seeds', '1', '--param', 'duration=0.2', '--out', out]);
    expect(other.stderr).toMatch(
      /--out .*o\.jsonl: holds lines of sweep plan \w+, but this sweep is plan \w+; append only the same sweep to one file/,
    );
    expect(other.status).toBe(2);
    expect(readFileSync(out, 'utf8')).toBe(before);
    writeFileSync(out, `${before}{"plan":"cut sh`);
    const again = await cli(['sweep', '--seeds', '0', '--param', 'duration=0.2', '--out', out, '--resume']);
    expect(again.stderr).toMatch(/o\.jsonl: dropped an unfinished last line \(15 bytes\)/);
    expect(again.stderr).toContain("resuming: 1 of this shard's 1 job(s) already in");
    expect(again.status).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(before);
  });

  it('sweep | head: a closed stdout ends the run quietly as an interrupt, without a crash', async () => {
    const r = spawnSync(
      'bash',
      [
        '-c',
        `'${process.execPath}' '${bin}' sweep --seeds 0..1 --param duration=0.1 --quiet | head -c 9; echo " status=\${PIPESTATUS[0]}"`,
      ],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(r.stdout).toBe('{"plan":" status=130\n');
    expect(r.stderr).not.toMatch(STACK);
    expect(r.stderr).not.toContain('EPIPE');
  });
});
