// merge streams: half a million lines, generated here, merge within a bounded heap (the child runs with
// a 32 MB old space, and its input is five times that), with no recursion or spread limits; a file
// that is not a sweep's is refused naming file:line, and empty input is a failure. The tool's own
// logic: no kernel function is modelled here.

import { closeSync, openSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { INVARIANTS } from '../../src/checker/violations.js';
import { STACK, cli, tempDir } from '../helpers/cli-helpers.js';

const N = 500_000;
const zeros = Object.fromEntries(INVARIANTS.map((i) => [i, 0]));

const VIOLATIONS = JSON.stringify(zeros);

/** One sweep line; job `i` of a plan of N, two parameter combinations (a template: half a million of them). */
function line(i: number, over: { ok?: boolean; crashes?: number; error?: string } = {}): string {
  const tail = over.error !== undefined ? `,"error":${JSON.stringify(over.error)}` : '';
  return `{"plan":"p1m","total":${N},"index":${i},"seed":${i >> 1},"params":{"vcpus":${1 + (i & 1)}},"ok":${over.ok ?? true},"faultsPerSecond":${100 + (i % 7)},"violations":${VIOLATIONS},"findings":{"punchHoleLeftovers":0,"crossVmPrepare":0},"counters":{},"elapsedMs":1,"crashes":${over.crashes ?? 0}${tail}}`;
}

describe('merge of half a million lines', () => {
  it('streams them in bounded memory, de-duplicates, sorts and summarises', async () => {
    const dir = tempDir();
    // Two halves, given in the wrong order; job 7 missing, job 12 twice (ok, then failing).
    const files = [join(dir, 'second.jsonl'), join(dir, 'first.jsonl')];
    for (const [k, f] of files.entries()) {
      const fd = openSync(f, 'w');
      // Appended to one string and written 4 MiB at a time: the quickest way here to 260 MB.
      let buf = '';
      for (let i = k === 0 ? N / 2 : 0; i < (k === 0 ? N : N / 2); i++) {
        if (i === 7) continue;
        buf += `${line(i)}\n`;
        if (i === 12) buf += `${line(12, { ok: false, crashes: 1, error: 'vmm crashed: test' })}\n`;
        if (buf.length >= 1 << 22) {
          writeSync(fd, buf);
          buf = '';
        }
      }
      writeSync(fd, buf);
      closeSync(fd);
    }
    const inputBytes = files.reduce((n, f) => n + statSync(f).size, 0);
    expect(inputBytes).toBeGreaterThan(4 * 32 * 2 ** 20);
    const out = join(dir, 'merged.jsonl');
    const r = await cli(['merge', ...files, '--json', '--out', out], {
      nodeArgs: ['--max-old-space-size=32', '--stack-size=200'],
      timeoutMs: 120_000,
    });
    expect(r.stderr).not.toMatch(STACK);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ plan: 'p1m', total: N, runs: N - 1, ok: N - 2, duplicates: 1, missing: [7] });
    expect(s.combinations).toEqual([
      {
        params: { vcpus: 1 },
        runs: N / 2,
        ok: N / 2 - 1,
        faultsPerSecond: expect.objectContaining({ min: 100, max: 106 }),
        violations: zeros,
        crashes: 1,
      },
      {
        params: { vcpus: 2 },
        runs: N / 2 - 1,
        ok: N / 2 - 1,
        faultsPerSecond: expect.objectContaining({ min: 100, max: 106 }),
        violations: zeros,
        crashes: 0,
      },
    ]);
    expect(s.failures).toEqual([expect.objectContaining({ index: 12, crashes: 1, error: 'vmm crashed: test' })]);
    expect(r.status).toBe(1);
    // The merged file: every job once, in index order, the failing copy of 12. Its lines are
    // counted in chunks, and the first and last ones read.
    const fd = openSync(out, 'r');
    const buf = Buffer.allocUnsafe(8 << 20);
    let lines = 0;
    let size = 0;
    for (let n = readSync(fd, buf, 0, buf.length, size); n > 0; n = readSync(fd, buf, 0, buf.length, size)) {
      for (let i = buf.indexOf(10); i >= 0 && i < n; i = buf.indexOf(10, i + 1)) lines++;
      size += n;
    }
    closeSync(fd);
    expect(lines).toBe(N - 1);
    expect(size).toBeGreaterThan(inputBytes - 2000);
    const first = Buffer.allocUnsafe(1 << 16);
    const fd2 = openSync(out, 'r');
    readSync(fd2, first, 0, first.length, 0);
    const tail = Buffer.allocUnsafe(4096);
    readSync(fd2, tail, 0, tail.length, size - tail.length);
    closeSync(fd2);
    const firstLines = first
      .toString('utf8')
      .split('\n')
      .slice(0, 13)
      .map((l) => JSON.parse(l));
    expect(firstLines.map((l) => l.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13]);
    expect(firstLines[11].ok).toBe(false);
    expect(JSON.parse(tail.toString('utf8').trimEnd().split('\n').at(-1) as string).index).toBe(N - 1);
  }, 180_000);

  it('refuses a file that is not a sweep output, naming file:line and the field', async () => {
    const dir = tempDir();
    const f = join(dir, 'scenario.json');
    writeFileSync(f, `${line(0)}\n{"policy": "prepare-on-fault", "vms": []}\n`);
    const r = await cli(['merge', f]);
    expect(r.stderr).toBe(`gmem-sandbox merge: ${f}:2: not a sweep line: plan: Invalid input: expected string, received undefined\n`);
    expect(r.status).toBe(2);
  });

  it('reports empty input (an empty file, or only blank lines on stdin) as a failure', async () => {
    const dir = tempDir();
    const f = join(dir, 'empty.jsonl');
    writeFileSync(f, '');
    const r = await cli(['merge', f]);
    expect(r.stdout).toBe(`merge: FAIL  no sweep lines in ${f}: nothing to merge\n`);
    expect(r.status).toBe(1);
    const s = await cli(['merge', '-', '--json'], { input: '\n\n' });
    expect(JSON.parse(s.stdout)).toEqual({ ok: false, error: 'no sweep lines in the input' });
    expect(s.status).toBe(1);
  });

  it("reads stdin (spooled to the run's temp directory, which is removed)", async () => {
    const s = await cli(['merge', '-'], { input: `${line(1)}\n${line(0)}\n`.replaceAll(`"total":${N}`, '"total":2') });
    expect(s.stdout).toMatch(/^sweep p1m: PASS {2}2 of 2 job\(s\) ran, 2 ok, 0 failing, 0 missing/);
    expect(s.status).toBe(0);
  });
});
