// `gmem-sandbox sweep` and `gmem-sandbox merge`: run a parameter x seed campaign (or one shard of
// it) on a worker pool as JSON lines, and join shards' lines into one summary. Their options are in
// src/cli/sweep.ts.

import {
  closeSync,
  createWriteStream,
  existsSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  statSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { forEachLine } from '../vmm/io/line-reader.js';
import { lockOutput } from '../vmm/io/lock.js';
import { InputError, checkOutputs, writeOutput } from '../vmm/io/outputs.js';
import { SweepMerger } from '../vmm/sweep/merge.js';
import { looksLikeExploreResult, mergeExploreResults, readExploreResult } from '../vmm/explore/merge.js';
import { exploreStatus } from './explore.js';
import { type SweepSummary, isOk } from '../vmm/sweep/merge.js';
import { formatParams } from '../vmm/sweep/params.js';
import { type SweepPlan, planSweep } from '../vmm/sweep/plan.js';
import { jobTraceFile, runSweep } from '../vmm/sweep/run.js';
import { EXIT } from './exit.js';
import { Progress } from './progress.js';

export interface SweepCliOptions {
  param: string[];
  seeds: string;
  shard?: string;
  jobs: number;
  out?: string;
  resume?: boolean;
  summary?: string;
  dryRun?: boolean;
  quiet?: boolean;
  trace?: string;
}

export interface MergeCliOptions {
  json?: boolean;
  out?: string;
}

/** Drops an unfinished last line (a write cut short by a kill) so that appended lines start on their own. */
function dropTornTail(file: string): void {
  const size = statSync(file).size;
  if (size === 0) return;
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(Math.min(size, 1 << 16));
    let end = size;
    for (;;) {
      const n = Math.min(buf.length, end);
      readSync(fd, buf, 0, n, end - n);
      const nl = buf.subarray(0, n).lastIndexOf(10);
      if (nl === n - 1 && end === size) return;
      if (nl >= 0 || end - n === 0) {
        const keep = nl >= 0 ? end - n + nl + 1 : 0;
        process.stderr.write(`gmem-sandbox sweep: ${file}: dropped an unfinished last line (${size - keep} bytes)\n`);
        truncateSync(file, keep);
        return;
      }
      end -= n;
    }
  } finally {
    closeSync(fd);
  }
}

/** Lines already in --out: validated, and all of this plan, or the file could never be merged. */
async function readPrevious(file: string, plan: SweepPlan, merger: SweepMerger, signal?: AbortSignal): Promise<void> {
  if (!existsSync(file)) return;
  dropTornTail(file);
  const id = merger.fileId(file);
  await forEachLine(file, (text, line) => merger.add(text, { file: id, line, offset: 0, length: 0 }), signal);
  if (merger.planId !== null && merger.planId !== plan.id) {
    throw new InputError(
      `--out ${file}: holds lines of sweep plan ${merger.planId}, but this sweep is plan ${plan.id}; append only the same sweep to one file`,
    );
  }
}

/** Runs `sweep`; returns the exit status (0 all ok, 1 a job failed, 2 bad arguments, 130 interrupted). */
export async function sweepCommand(o: SweepCliOptions, signal?: AbortSignal): Promise<number> {
  const plan = planSweep({ params: o.param, seeds: o.seeds, ...(o.shard !== undefined ? { shard: o.shard } : {}) });
  if (o.resume && o.out === undefined) throw new InputError('--resume needs --out FILE: the file whose lines say which jobs are done');
  checkOutputs([
    o.out !== undefined ? { flag: '--out', path: o.out, kind: 'file' } : undefined,
    o.summary !== undefined ? { flag: '--summary', path: o.summary, kind: 'file' } : undefined,
    o.trace !== undefined ? { flag: '--trace', path: jobTraceFile(o.trace, 0), kind: 'file' } : undefined,
  ]);
  const log = (s: string) => {
    if (!o.quiet) process.stderr.write(`${s}\n`);
  };
  if (o.dryRun) {
    for (const j of plan.jobs) process.stdout.write(`${JSON.stringify(j)}\n`);
    log(describePlan(plan, o.jobs));
    return EXIT.PASS;
  }
  const unlock = o.out !== undefined ? lockOutput('--out', o.out) : () => undefined;
  try {
    return await runSweepInto(o, plan, log, signal);
  } finally {
    unlock();
  }
}

/** The sweep proper, once its output is locked: earlier lines, the jobs, then the summary. */
async function runSweepInto(o: SweepCliOptions, plan: SweepPlan, log: (s: string) => void, signal?: AbortSignal): Promise<number> {
  const merger = new SweepMerger();
  if (o.out !== undefined) await readPrevious(o.out, plan, merger, signal);
  const thisRun = merger.fileId('(this run, job)');
  const todo = o.resume ? { ...plan, jobs: plan.jobs.filter((j) => !merger.has(j.index)) } : plan;
  log(describePlan(plan, o.jobs));
  if (o.resume)
    log(
      `resuming: ${plan.jobs.length - todo.jobs.length} of this shard's ${plan.jobs.length} job(s) already in ${o.out}, ${todo.jobs.length} to run`,
    );
  // Appending, one write per line: an interrupted sweep keeps every line it finished.
  let fd = o.out !== undefined ? openSync(o.out, 'a') : null;
  const emit = (s: string): void => {
    if (fd !== null) {
      try {
        writeSync(fd, s);
        return;
      } catch (e) {
        // A full disk must not cost the finished jobs: their lines go to stdout from here on.
        process.stderr.write(`gmem-sandbox sweep: not written: ${o.out}: ${(e as Error).message}; the following lines go to stdout\n`);
        closeSync(fd);
        fd = null;
      }
    }
    process.stdout.write(s);
  };
  const progress = new Progress(o.quiet === true);
  let done = 0;
  let failing = 0;
  try {
    await runSweep(todo, {
      ...(o.trace ? { trace: o.trace } : {}),
      concurrency: o.jobs,
      ...(signal ? { signal } : {}),
      onLine: (l) => {
        emit(`${JSON.stringify(l)}\n`);
        merger.addLine(l, { file: thisRun, line: l.index, offset: 0, length: 0 });
        done++;
        if (!isOk(l)) {
          failing++;
          progress.done();
          log(
            `! job ${l.index} (seed ${l.seed}${l.params && formatParams(l.params) ? `, ${formatParams(l.params)}` : ''}) failed: ${failureText(l)}`,
          );
        }
        progress.update(
          done / todo.jobs.length,
          `${done}/${todo.jobs.length} jobs, ${failing} failing; last #${l.index} seed ${l.seed} ${Math.round(l.faultsPerSecond)} faults/s`,
        );
      },
    });
  } catch (e) {
    // Stopping the pool under an interrupt may fail as well: the summary of what finished stands.
    if (!signal?.aborted) throw e;
  } finally {
    progress.done();
    if (fd !== null) closeSync(fd);
  }
  const interrupted = signal?.aborted === true;
  const summary = merger.summary();
  if (o.summary !== undefined) writeOutput(o.summary, `${JSON.stringify({ ...summaryJson(summary), interrupted }, null, 2)}\n`);
  if (!o.quiet) process.stderr.write(`${formatSummary(summary, { shard: plan.shard !== null, interrupted, plan })}\n`);
  if (interrupted) {
    log(
      `INTERRUPTED: ${done} of ${todo.jobs.length} job(s) finished in this run${o.out !== undefined ? `; rerun with --resume to run the rest into ${o.out}` : ''}`,
    );
    return EXIT.INTERRUPTED;
  }
  return summary.failures.length > 0 ? EXIT.FAIL : EXIT.PASS;
}

/** Copies stdin to a file, so that its lines can be read back by offset like any input. */
async function spoolStdin(dir: string): Promise<string> {
  const file = join(dir, 'stdin.jsonl');
  await pipeline(process.stdin, createWriteStream(file));
  return file;
}

/**
 * Writes the merged lines in index order, read back from their inputs by offset. Lines that lie
 * one after the other in a file (an input already in order) are read as one range.
 */
function writeMerged(out: string, m: SweepMerger, paths: string[]): boolean {
  const fds = paths.map((p) => openSync(p, 'r'));
  let fd = -1;
  try {
    fd = openSync(out, 'w');
    let file = -1;
    let start = 0;
    let end = 0;
    // Writes one range of whole lines (with the single newlines between them) and a newline.
    const flush = (): void => {
      if (file < 0) return;
      const buf = Buffer.allocUnsafe(end - start + 1);
      readSync(fds[file], buf, 0, end - start, start);
      buf[end - start] = 10;
      writeSync(fd, buf);
    };
    for (const { src } of m.present()) {
      if (src.file === file && src.offset === end + 1 && end - start < 1 << 20) {
        end = src.offset + src.length;
        continue;
      }
      flush();
      file = src.file;
      start = src.offset;
      end = src.offset + src.length;
    }
    flush();
    return true;
  } catch (e) {
    process.stderr.write(`gmem-sandbox merge: not written: ${out}: ${(e as Error).message}\n`);
    return false;
  } finally {
    if (fd >= 0) closeSync(fd);
    for (const f of fds) closeSync(f);
  }
}

/** Runs `merge`; returns the exit status (0 all ok and complete, 1 failures, missing jobs or no input, 2 bad input). */
export async function mergeCommand(files: string[], o: MergeCliOptions, signal?: AbortSignal): Promise<number> {
  checkOutputs([o.out !== undefined ? { flag: '--out', path: o.out, kind: 'file' } : undefined]);
  if (o.out !== undefined && files.some((f) => f !== '-' && resolve(f) === resolve(o.out as string))) {
    throw new InputError(`--out ${o.out}: is also an input file, and would be replaced before it is read`);
  }
  let spool: string | null = null;
  try {
    const paths: string[] = [];
    for (const f of files) {
      if (f === '-') {
        spool ??= mkdtempSync(join(tmpdir(), 'gmem-merge-'));
        paths.push(await spoolStdin(spool));
      } else {
        if (!existsSync(f) || !statSync(f).isFile())
          throw new InputError(`${f}: cannot read: ${existsSync(f) ? 'not a regular file' : 'no such file'}`);
        paths.push(f);
      }
    }
    if (paths.length > 0 && looksLikeExploreResult(paths[0])) return mergeExplore(files, paths, o);
    const m = new SweepMerger();
    for (const [k, p] of paths.entries()) {
      const file = m.fileId(files[k] === '-' ? '<stdin>' : files[k]);
      await forEachLine(p, (text, line, offset, length) => m.add(text, { file, line, offset, length }), signal);
    }
    if (m.lines === 0) {
      process.stdout.write(
        o.json
          ? `${JSON.stringify({ ok: false, error: 'no sweep lines in the input' }, null, 2)}\n`
          : `merge: FAIL  no sweep lines in ${files.join(', ')}: nothing to merge\n`,
      );
      return EXIT.FAIL;
    }
    const summary = m.summary();
    if (o.out !== undefined) writeMerged(o.out, m, paths);
    process.stdout.write(o.json ? `${JSON.stringify(summaryJson(summary), null, 2)}\n` : `${formatSummary(summary)}\n`);
    if (summary.missing.length > 0 && o.json)
      process.stderr.write(`gmem-sandbox merge: incomplete: ${summary.missing.length} of ${summary.total} jobs missing\n`);
    return summary.failures.length > 0 || summary.missing.length > 0 ? EXIT.FAIL : EXIT.PASS;
  } finally {
    if (spool !== null) rmSync(spool, { recursive: true, force: true });
  }
}

/** The summary without the merged lines themselves. */
export function summaryJson(s: SweepSummary): Omit<SweepSummary, 'lines'> {
  const { lines: _lines, ...rest } = s;
  return rest;
}

function describePlan(plan: SweepPlan, jobs: number): string {
  const combos = plan.total / plan.seeds.length;
  const shard = plan.shard ? `; shard ${plan.shard.k}/${plan.shard.n} runs ${plan.jobs.length}` : '';
  return `gmem-sandbox sweep: plan ${plan.id}: ${plan.total} job(s) = ${combos} combination(s) x ${plan.seeds.length} seed(s)${shard}; ${jobs} at a time`;
}

function failureText(l: { violations: Record<string, number>; crashes: number; error?: string }): string {
  const v = Object.entries(l.violations)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k}=${n}`);
  if (l.crashes > 0) v.push(`crashes=${l.crashes}`);
  return `${v.join(' ') || 'not ok'}${l.error ? ` (${l.error})` : ''}`;
}

function table(head: string[], rows: string[][], right: boolean[]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => `  ${r.map((c, i) => (right[i] ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ')}`.trimEnd();
  return [fmt(head), ...rows.map(fmt)];
}

const n0 = (x: number) => Math.round(x).toLocaleString('en-US');

/** The summary as a table: one row per parameter combination, then the failing jobs with rerun commands. */
export function formatSummary(
  s: SweepSummary,
  o: { shard?: boolean; maxFailures?: number; interrupted?: boolean; plan?: { id: string; total: number } } = {},
): string {
  const out: string[] = [];
  const failing = s.failures.length;
  const verdict = o.interrupted ? 'INTERRUPTED' : failing > 0 ? 'FAIL' : s.missing.length > 0 && !o.shard ? 'INCOMPLETE' : 'PASS';
  // With no line yet, the plan still says what was asked for.
  const plan = s.plan || o.plan?.id || '(empty)';
  const total = s.plan ? s.total : (o.plan?.total ?? s.total);
  out.push(
    `sweep ${plan}: ${verdict}  ${s.runs} of ${total} job(s) ran, ${s.ok} ok, ${failing} failing` +
      `${o.shard ? '' : `, ${s.missing.length} missing`}${s.duplicates ? `, ${s.duplicates} duplicate line(s) dropped` : ''}`,
  );
  if (s.combinations.length > 0) {
    const rows = s.combinations.map((c) => [
      formatParams(c.params) || '(defaults)',
      String(c.runs),
      String(c.ok),
      `${n0(c.faultsPerSecond.mean)} (${n0(c.faultsPerSecond.min)}..${n0(c.faultsPerSecond.max)})`,
      failureText({ violations: c.violations, crashes: 0 }).replace(/^not ok$/, '-'),
      String(c.crashes),
    ]);
    out.push(
      '',
      ...table(['combination', 'runs', 'ok', 'faults/s mean (min..max)', 'violations', 'crashes'], rows, [
        false,
        true,
        true,
        true,
        false,
        true,
      ]),
    );
  }
  if (!o.shard && s.missing.length > 0) {
    const shown = s.missing.slice(0, 20).join(', ');
    out.push(
      '',
      `missing job indices (a shard did not finish?): ${shown}${s.missing.length > 20 ? `, ... (${s.missing.length} in all)` : ''}`,
    );
  }
  if (failing > 0) {
    const max = o.maxFailures ?? 20;
    out.push('', 'failing jobs (rerun one alone with the command under it):');
    for (const f of s.failures.slice(0, max)) {
      out.push(`  #${f.index} seed ${f.seed}${formatParams(f.params) ? ` ${formatParams(f.params)}` : ''}: ${failureText(f)}`);
      out.push(`    ${f.rerun}`);
    }
    if (failing > max) out.push(`  ... and ${failing - max} more (merge --json lists them all)`);
  }
  return out.join('\n');
}

/** Explore shards (`explore --shard K/N --json`): one result, as the unsharded search would give. */
function mergeExplore(files: string[], paths: string[], o: MergeCliOptions): number {
  const merged = mergeExploreResults(files, paths.map(readExploreResult));
  const incomplete = merged.missingShards.length > 0;
  const status =
    incomplete || merged.interrupted
      ? EXIT.FAIL
      : exploreStatus(
          merged.results.some((r) => r.bug !== null),
          merged.results,
        );
  if (o.out !== undefined) writeOutput(o.out, `${JSON.stringify(merged, null, 2)}\n`);
  if (o.json) process.stdout.write(`${JSON.stringify(merged, null, 2)}\n`);
  else {
    for (const r of merged.results) {
      const name = r.bug ?? merged.catalogue ?? '(no planted bug)';
      process.stdout.write(
        r.found
          ? `${name}: FOUND, first at seed ${r.seed} (${r.schedules} schedules over ${files.length} shard(s))\n  ${r.violation}\n  saved ${r.saved ?? '(not written)'}\n`
          : `${name}: not found in ${r.schedules} schedules over ${files.length} shard(s)\n`,
      );
    }
    if (incomplete)
      process.stdout.write(
        `merge: INCOMPLETE, shards missing: ${merged.missingShards.map((k) => `${k}/${merged.shardCount}`).join(', ')}\n`,
      );
  }
  return status;
}
