// `gmem-sandbox sweep` and `gmem-sandbox merge`: run a parameter x seed campaign (or one shard of
// it) on a worker pool as JSON lines, and join shards' lines into one summary.

import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import {
  type InputLine,
  PARAM_HELP,
  type SweepLine,
  type SweepPlan,
  type SweepSummary,
  SweepError,
  formatParams,
  inputLines,
  isOk,
  mergeLines,
  planSweep,
  runSweep,
} from '../vmm/sweep.js';
import { Progress } from './progress.js';

export interface SweepCliOptions {
  param: string[];
  seeds: string;
  shard?: string;
  jobs: number;
  out?: string;
  summary?: string;
  dryRun?: boolean;
  quiet?: boolean;
  trace?: string;
}

export interface MergeCliOptions {
  json?: boolean;
  out?: string;
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function jobsArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError(`--jobs must be an integer from 1 to 64, got '${v}'`);
  return n;
}

export function registerSweep(program: Command): void {
  program
    .command('sweep')
    .description('run stress over a cartesian product of parameters x seeds on a worker pool, one JSON line per job')
    .option('--param <name=values>', `a parameter and its values, comma-separated, 'all' for policy/vm-type/pattern (repeatable); names: ${PARAM_HELP}`, collect, [])
    .option('--seeds <list>', 'seeds: A..B (inclusive), a comma list, or both (0..9,100)', '0')
    .option('--shard <K/N>', 'run only shard K of N (K 0-based, 0 <= K < N: jobs with index % N == K), e.g. $JOB_COMPLETION_INDEX/N')
    .option('--jobs <n>', 'jobs running at once (each job runs 2 + vCPUs threads itself)', jobsArg, 1)
    .option('--out <file>', 'write the JSON lines to this file instead of stdout')
    .option('--summary <file>', 'also write the merged summary as JSON to this file')
    .option('--dry-run', 'print the planned jobs of this shard as JSON lines ({index, seed, params}) and run nothing')
    .option('--quiet', 'no progress or summary table on stderr')
    .option('--trace <file.json>', "write each job's Chrome trace, the job index inserted before the extension (t.json -> t.7.json)")
    .action(async (o: SweepCliOptions) => {
      process.exitCode = await sweepCommand(o);
    });

  program
    .command('merge')
    .description("join sweep shards' JSON lines: de-duplicate, sort, summarise per parameter combination, list failing jobs")
    .argument('<files...>', "sweep output files ('-' for stdin)")
    .option('--json', 'print the summary as JSON')
    .option('--out <file>', 'write the merged lines (de-duplicated, sorted by index) to this file')
    .action((files: string[], o: MergeCliOptions) => {
      process.exitCode = mergeCommand(files, o);
    });
}

/** Runs `sweep`; returns the exit code (0 all ok, 1 a job failed, 2 bad arguments). */
export async function sweepCommand(o: SweepCliOptions): Promise<number> {
  let plan: SweepPlan;
  try {
    plan = planSweep({ params: o.param, seeds: o.seeds, ...(o.shard !== undefined ? { shard: o.shard } : {}) });
  } catch (e) {
    if (!(e instanceof SweepError)) throw e;
    process.stderr.write(`gmem-sandbox sweep: ${e.message}\n`);
    return 2;
  }
  const log = (s: string) => {
    if (!o.quiet) process.stderr.write(`${s}\n`);
  };
  if (o.dryRun) {
    for (const j of plan.jobs) process.stdout.write(`${JSON.stringify(j)}\n`);
    log(describePlan(plan, o.jobs));
    return 0;
  }
  const fd = o.out !== undefined ? openSync(o.out, 'w') : null;
  const emit = (s: string) => (fd === null ? process.stdout.write(s) : writeSync(fd, s));
  log(describePlan(plan, o.jobs));
  const progress = new Progress(o.quiet === true);
  let done = 0;
  let failing = 0;
  const lines: SweepLine[] = [];
  try {
    await runSweep(plan, {
      ...(o.trace ? { trace: o.trace } : {}),
      concurrency: o.jobs,
      onLine: (l) => {
        emit(`${JSON.stringify(l)}\n`);
        lines.push(l);
        done++;
        if (!isOk(l)) {
          failing++;
          progress.done();
          log(`! job ${l.index} (seed ${l.seed}${l.params && formatParams(l.params) ? `, ${formatParams(l.params)}` : ''}) failed: ${failureText(l)}`);
        }
        progress.update(done / plan.jobs.length, `${done}/${plan.jobs.length} jobs, ${failing} failing; last #${l.index} seed ${l.seed} ${Math.round(l.faultsPerSecond)} faults/s`);
      },
    });
  } finally {
    progress.done();
    if (fd !== null) closeSync(fd);
  }
  const summary = mergeLines(lines.map((l) => JSON.stringify(l)));
  if (o.summary !== undefined) writeFileSync(o.summary, `${JSON.stringify(summaryJson(summary), null, 2)}\n`);
  if (!o.quiet) process.stderr.write(`${formatSummary(summary, { shard: plan.shard !== null })}\n`);
  return summary.failures.length > 0 ? 1 : 0;
}

/** Runs `merge`; returns the exit code (0 all ok and complete, 1 failures or missing jobs, 2 bad input). */
export function mergeCommand(files: string[], o: MergeCliOptions): number {
  const input: InputLine[] = [];
  let summary: SweepSummary;
  try {
    for (const f of files) {
      let text: string;
      try {
        text = readFileSync(f === '-' ? 0 : f, 'utf8');
      } catch (e) {
        throw new SweepError(`cannot read ${f}: ${(e as Error).message}`);
      }
      input.push(...inputLines(f === '-' ? '<stdin>' : f, text));
    }
    summary = mergeLines(input);
  } catch (e) {
    if (!(e instanceof SweepError)) throw e;
    process.stderr.write(`gmem-sandbox merge: ${e.message}\n`);
    return 2;
  }
  if (o.out !== undefined) writeFileSync(o.out, summary.lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  process.stdout.write(o.json ? `${JSON.stringify(summaryJson(summary), null, 2)}\n` : `${formatSummary(summary)}\n`);
  if (summary.missing.length > 0 && o.json) process.stderr.write(`gmem-sandbox merge: incomplete: ${summary.missing.length} of ${summary.total} jobs missing\n`);
  return summary.failures.length > 0 || summary.missing.length > 0 ? 1 : 0;
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
export function formatSummary(s: SweepSummary, o: { shard?: boolean; maxFailures?: number } = {}): string {
  const out: string[] = [];
  const failing = s.failures.length;
  const verdict = failing > 0 ? 'FAIL' : s.missing.length > 0 && !o.shard ? 'INCOMPLETE' : 'PASS';
  out.push(
    `sweep ${s.plan || '(empty)'}: ${verdict}  ${s.runs} of ${s.total} job(s) ran, ${s.ok} ok, ${failing} failing` +
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
    out.push('', ...table(['combination', 'runs', 'ok', 'faults/s mean (min..max)', 'violations', 'crashes'], rows, [false, true, true, true, false, true]));
  }
  if (!o.shard && s.missing.length > 0) {
    const shown = s.missing.slice(0, 20).join(', ');
    out.push('', `missing job indices (a shard did not finish?): ${shown}${s.missing.length > 20 ? `, ... (${s.missing.length} in all)` : ''}`);
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
