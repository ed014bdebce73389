// A model-checked scenario's saved failing schedule: what `replay` needs to rerun it exactly,
// and the checker that reruns it.

import { type ModelCheckOptions, type McSchedule, ModelChecker, type ScenarioScheduleFile } from './model-check.js';
import { parseScenario } from './schema.js';

/** The file body for a failing schedule. */
export function scheduleFile(
  raw: unknown,
  path: string | null,
  opts: ModelCheckOptions,
  r: McSchedule,
  maxSteps = opts.maxSteps ?? 20_000,
): ScenarioScheduleFile {
  return {
    version: 1,
    kind: 'scenario',
    scenarioPath: path,
    scenario: raw,
    mode: opts.mode,
    preemptions: opts.preemptions,
    bug: opts.bug ?? null,
    maxSteps,
    ...(opts.points !== undefined && opts.points !== 'locks' ? { points: opts.points } : {}),
    seed: r.seed,
    choices: r.choices,
    outcome: r.outcome,
    failures: r.failures,
    violations: r.violations,
  };
}

/** A model checker for a saved schedule's scenario and settings. */
export function checkerFor(saved: ScenarioScheduleFile): ModelChecker {
  return new ModelChecker(parseScenario(saved.scenario), {
    mode: saved.mode,
    preemptions: saved.preemptions,
    maxSchedules: 1,
    bug: saved.bug,
    maxSteps: saved.maxSteps,
    ...(saved.points !== undefined ? { points: saved.points } : {}),
  });
}

export function isScenarioSchedule(x: unknown): x is ScenarioScheduleFile {
  return (
    x !== null &&
    typeof x === 'object' &&
    (x as { kind?: unknown }).kind === 'scenario' &&
    (x as { version?: unknown }).version === 1 &&
    Array.isArray((x as { choices?: unknown }).choices)
  );
}
