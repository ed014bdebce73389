// `gmem-sandbox explore FILE.json`: model checking of a scenario's parallel groups, and `replay`
// of the schedules it saves. Kept apart from cli/explore.ts (the workload explorer) so the two
// change independently. Exit status: 0 every schedule run passed (complete or not: the output
// says which), 1 a schedule failed, 2 usage (unreadable or refused scenario, bad option, output
// directory not writable), 130 interrupted.

import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';
import { checkOutputs, mkdirs, writeOutput } from '../vmm/io/outputs.js';
import { basename, join } from 'node:path';
import { BUG_NAMES, type BugName } from '../gmem/bugs.js';
import { type McSchedule, type ModelCheckOptions, type ModelCheckResult, ModelChecker } from '../vmm/scenario/model-check.js';
import { checkerFor, isScenarioSchedule, scheduleFile } from '../vmm/scenario/saved.js';
import { parseScenario } from '../vmm/scenario/schema.js';
import { ScenarioError } from '../vmm/io/problems.js';
import { Progress } from './progress.js';
import type { PointsMode } from '../shm/points.js';
import { chromeTraceFromSchedule } from '../vmm/report/chrome-trace.js';

export interface ModelCheckCliOptions {
  mode: 'exhaustive' | 'random';
  preemptions: number;
  maxSchedules: number;
  /** Random mode: schedules to run, from --seed on. */
  schedules: number;
  seed: number;
  bug?: string;
  points?: PointsMode;
  out: string;
  shrink: boolean;
  json?: boolean;
  trace?: string;
}

function usage(msg: string): number {
  process.stderr.write(`gmem-sandbox explore: ${msg}\n`);
  return 2;
}

function describeFailure(r: McSchedule): string {
  return r.failures[0] ?? (r.violations[0] ? `${r.violations[0].invariant}: ${r.violations[0].detail}` : r.outcome);
}

export async function modelCheckCommand(file: string, o: ModelCheckCliOptions): Promise<number> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    return usage(`cannot read ${file}: ${(e as Error).message}`);
  }
  if (o.bug === 'all') return usage('--bug all searches the built-in workload; with a scenario file, name one bug');
  if (o.bug !== undefined && !(BUG_NAMES as string[]).includes(o.bug)) return usage(`--bug: unknown planted bug '${o.bug}'`);
  if (o.trace !== undefined)
    return usage('--trace is not supported with a scenario file (replay the saved schedule of the workload explorer instead)');
  // The output directory is checked before any work, so a long search cannot end unsaved.
  try {
    mkdirs(o.out);
    accessSync(o.out, constants.W_OK);
  } catch (e) {
    return usage(`--out ${o.out}: not a writable directory (${(e as Error).message})`);
  }
  const opts: ModelCheckOptions = {
    mode: o.mode,
    preemptions: o.preemptions,
    maxSchedules: o.mode === 'random' ? o.schedules : o.maxSchedules,
    seed: o.seed,
    bug: (o.bug as BugName | undefined) ?? null,
    ...(o.points !== undefined ? { points: o.points } : {}),
  };
  let mc: ModelChecker;
  try {
    mc = new ModelChecker(parseScenario(raw), opts);
  } catch (e) {
    if (e instanceof ScenarioError) return usage(`${file}: ${e.message}`);
    throw e;
  }
  let interrupted = false;
  const onSigint = (): void => {
    interrupted = true;
  };
  process.once('SIGINT', onSigint);
  const progress = new Progress(false);
  const label =
    (o.mode === 'random'
      ? `random, ${opts.maxSchedules} schedules from seed ${o.seed}`
      : `exhaustive, at most ${o.preemptions} preemption(s)`) + (o.points === 'shared' ? ', points shared' : '');
  try {
    const res = await mc.explore(
      (n) => progress.update(o.mode === 'random' ? n / opts.maxSchedules : 0, `${basename(file)}: schedule ${n}`),
      () => interrupted,
    );
    progress.done();
    let saved: string | undefined;
    let shrunk: { saved: string; choices: number; preemptions: number } | undefined;
    if (res.failing) {
      const tag = `${basename(file).replace(/\.json$/, '')}-${o.mode}${o.mode === 'exhaustive' ? `-k${o.preemptions}` : ''}`;
      saved = join(o.out, `schedule-${tag}.json`);
      writeFileSync(saved, `${JSON.stringify(scheduleFile(raw, file, opts, res.failing))}\n`);
      if (o.shrink) {
        const s = await mc.shrink(res.failing);
        const f = join(o.out, `schedule-${tag}-shrunk.json`);
        writeFileSync(f, `${JSON.stringify(scheduleFile(raw, file, opts, s))}\n`);
        shrunk = { saved: f, choices: s.choices.length, preemptions: s.preemptions };
      }
    }
    if (o.json) {
      process.stdout.write(
        `${JSON.stringify({ file, ...summary(res), ...(saved ? { saved } : {}), ...(shrunk ? { shrunk } : {}), interrupted }, null, 2)}\n`,
      );
    } else {
      process.stdout.write(`${report(file, label, res, interrupted, saved, shrunk)}\n`);
    }
    if (res.failing) return 1;
    return interrupted ? 130 : 0;
  } finally {
    process.off('SIGINT', onSigint);
    await mc.close();
  }
}

function summary(res: ModelCheckResult): object {
  const f = res.failing;
  return {
    mode: res.mode,
    preemptions: res.preemptions,
    schedules: res.schedules,
    complete: res.complete,
    capHit: res.capHit,
    stepLimited: res.stepLimited,
    ok: f === undefined,
    ...(f
      ? {
          failing: {
            outcome: f.outcome,
            preemptions: f.preemptions,
            choices: f.choices.length,
            failures: f.failures,
            violations: f.violations,
          },
        }
      : {}),
  };
}

function report(
  file: string,
  label: string,
  res: ModelCheckResult,
  interrupted: boolean,
  saved?: string,
  shrunk?: { saved: string; choices: number; preemptions: number },
): string {
  const out = [`model check of ${file} (${label})`];
  const f = res.failing;
  if (f) {
    out.push(
      `FAILED on schedule ${res.schedules} (${f.preemptions} preemption(s), ${f.choices.length} scheduler steps, outcome ${f.outcome})`,
    );
    for (const m of f.failures.slice(0, 5)) out.push(`  ${m}`);
    for (const v of f.violations.slice(0, 5)) out.push(`  ${v.invariant}: ${v.detail}`);
    out.push(`  saved ${saved}`);
    if (shrunk) out.push(`  shrunk to ${shrunk.choices} forced choices, ${shrunk.preemptions} preemption(s): ${shrunk.saved}`);
    out.push(`  rerun with: gmem-sandbox replay ${shrunk?.saved ?? saved}`);
  } else if (res.mode === 'random') {
    out.push(`ran ${res.schedules} random schedule(s), all passed${interrupted ? ' (interrupted)' : ''}`);
  } else if (res.complete) {
    out.push(`covered ${res.schedules} schedules (${res.preemptions} preemptions), all passed: complete`);
  } else if (!interrupted && !res.capHit) {
    out.push(
      `ran ${res.schedules} schedules (${res.preemptions} preemptions), all passed, but NOT complete: ${res.stepLimited} were cut by the step limit`,
    );
  } else {
    const why = interrupted ? 'interrupted' : `stopped at the cap of ${res.schedules} schedules (--max-schedules)`;
    out.push(`${why}: NOT complete; the ${res.schedules} schedules run (at most ${res.preemptions} preemptions) all passed`);
  }
  if (res.stepLimited > 0) out.push(`  ${res.stepLimited} schedule(s) were cut by the step limit and checked only as far as they ran`);
  return out.join('\n');
}

/**
 * `replay` of a file `explore FILE.json` saved; null when the file is not one (the caller then
 * treats it as a workload schedule).
 */
export async function replayIfScenario(file: string, o: { json?: boolean; trace?: string }): Promise<number | null> {
  let saved: unknown;
  try {
    saved = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
  if (!isScenarioSchedule(saved)) return null;
  checkOutputs([o.trace !== undefined ? { flag: '--trace', path: o.trace, kind: 'file' } : undefined]);
  const mc = checkerFor(saved);
  try {
    const { reproduced, result: r } = await mc.replay(saved);
    const t = mc.lastTrace();
    if (o.trace !== undefined && t !== null) {
      if (t.dropped > 0)
        process.stderr.write(`gmem-sandbox: trace ${o.trace}: ${t.dropped} event(s) dropped, the schedule's trace was full\n`);
      const body = { ...chromeTraceFromSchedule(t.mem, t.events, t.names), metadata: { droppedEvents: t.dropped } };
      if (writeOutput(o.trace, JSON.stringify(body))) process.stderr.write(`gmem-sandbox replay: wrote the trace to ${o.trace}\n`);
    }
    if (o.json) {
      process.stdout.write(
        `${JSON.stringify({ reproduced, outcome: r.outcome, preemptions: r.preemptions, failures: r.failures, violations: r.violations }, null, 2)}\n`,
      );
    } else {
      process.stdout.write(
        `replay of ${file} (scenario ${saved.scenarioPath ?? '(embedded)'}): ${reproduced ? 'reproduced exactly' : 'DIVERGED'} (outcome ${r.outcome})\n`,
      );
      process.stdout.write(`  ${describeFailure(r)}\n`);
    }
    return reproduced ? 0 : 1;
  } finally {
    await mc.close();
  }
}
