// Merging sweep output: every line validated (an error names file:line and the field), jobs
// de-duplicated by index, summarised per parameter combination. Memory is bounded by the plan,
// not the input: per job index the merger keeps a few numbers in typed arrays and where its line
// is, never the line itself, so a million lines merge in tens of megabytes; the merged lines are
// read back from their files in index order when they are written out.

import { z } from 'zod';
import { INVARIANTS } from '../../checker/violations.js';
import type { SweepLine } from './line.js';
import { type SweepParams, formatParams, rerunCommand } from './params.js';
import { SweepError } from '../io/problems.js';

const count = z.number().int().nonnegative();
const lineSchema = z.strictObject({
  plan: z.string().min(1),
  total: z.number().int().positive(),
  index: count,
  seed: count,
  params: z.record(z.string(), z.union([z.string(), z.number()])),
  ok: z.boolean(),
  faultsPerSecond: z.number().nonnegative(),
  // Partial: lines written before an invariant existed (lockOrder, assertion) count none of it.
  violations: z.partialRecord(z.enum(INVARIANTS), count),
  findings: z.object({ punchHoleLeftovers: count, crossVmPrepare: count }),
  counters: z.record(z.string(), z.number()),
  elapsedMs: z.number().nonnegative(),
  crashes: count,
  error: z.string().optional(),
});

/** Validates one parsed line; the message names the field and the rule. */
export function parseSweepLine(raw: unknown, where: string): SweepLine {
  const parsed = lineSchema.safeParse(raw);
  if (!parsed.success) {
    const iss = parsed.error.issues[0];
    throw new SweepError(`${where}: not a sweep line: ${iss.path.length ? `${iss.path.join('.')}: ` : ''}${iss.message}`);
  }
  return parsed.data as SweepLine;
}

/** A line with where it came from, for error messages. */
export interface InputLine {
  text: string;
  file: string;
  line: number;
}

/** Splits a file's text into numbered lines (blank lines are skipped by the merger). */
export function inputLines(file: string, text: string): InputLine[] {
  return text.split(/\r?\n/).map((t, i) => ({ text: t, file, line: i + 1 }));
}

/** Where a line is: its file (see SweepMerger.fileId), line number, and bytes to read it back by. */
export interface LineSource {
  file: number;
  line: number;
  offset: number;
  length: number;
}

export interface ComboSummary {
  params: SweepParams;
  runs: number;
  ok: number;
  faultsPerSecond: { mean: number; min: number; max: number };
  violations: Record<string, number>;
  crashes: number;
}

export interface SweepFailure {
  index: number;
  seed: number;
  params: SweepParams;
  violations: Record<string, number>;
  crashes: number;
  error?: string;
  rerun: string;
}

export interface SweepSummary {
  plan: string;
  /** Jobs in the whole campaign. */
  total: number;
  /** Distinct jobs seen. */
  runs: number;
  ok: number;
  duplicates: number;
  /** Job indices of the campaign that no input line covers. */
  missing: number[];
  combinations: ComboSummary[];
  failures: SweepFailure[];
  /** The merged lines, de-duplicated and sorted by index (only from mergeLines, which keeps them). */
  lines: SweepLine[];
}

/** A job failed if it says so, or had any violation or crash. */
export function isOk(l: SweepLine): boolean {
  return l.ok && l.crashes === 0 && Object.values(l.violations).every((n) => n === 0);
}

function stableKey(p: SweepParams): string {
  return JSON.stringify(
    Object.keys(p)
      .sort()
      .map((k) => [k, (p as Record<string, string | number>)[k]]),
  );
}

const NINV = INVARIANTS.length;

/** Per-index state of a plan's jobs, in typed arrays sized by the plan. */
class Jobs {
  readonly combo: Int32Array;
  readonly seed: Uint32Array;
  readonly ok: Uint8Array;
  readonly fps: Float64Array;
  readonly crashes: Uint32Array;
  readonly violations: Uint32Array;
  readonly srcFile: Int32Array;
  readonly srcLine: Uint32Array;
  readonly srcOffset: Float64Array;
  readonly srcLength: Uint32Array;
  constructor(total: number) {
    this.combo = new Int32Array(total).fill(-1);
    this.seed = new Uint32Array(total);
    this.ok = new Uint8Array(total);
    this.fps = new Float64Array(total);
    this.crashes = new Uint32Array(total);
    this.violations = new Uint32Array(total * NINV);
    this.srcFile = new Int32Array(total).fill(-1);
    this.srcLine = new Uint32Array(total);
    this.srcOffset = new Float64Array(total);
    this.srcLength = new Uint32Array(total);
  }
}

/**
 * Merges lines one at a time: validates each (errors name file:line), de-duplicates by index
 * (the same index twice must be the same job; a failing copy wins over an ok one, else the
 * first) and keeps per index what the summary needs. Blank lines are skipped.
 */
export class SweepMerger {
  private plan: { id: string; total: number; where: string } | null = null;
  private jobs: Jobs | null = null;
  private readonly combos = new Map<string, number>();
  private readonly comboParams: SweepParams[] = [];
  private readonly failing = new Map<number, SweepLine>();
  private readonly kept: Map<number, SweepLine> | null;
  private readonly files: string[] = [];
  duplicates = 0;
  /** Non-blank lines seen. */
  lines = 0;

  /** `keepLines`: also keep every winning line (for small inputs: mergeLines). */
  constructor(keepLines = false) {
    this.kept = keepLines ? new Map() : null;
  }

  /** The id of an input's name, for LineSource.file. */
  fileId(name: string): number {
    const i = this.files.indexOf(name);
    return i >= 0 ? i : this.files.push(name) - 1;
  }

  private where(src: LineSource): string {
    return `${this.files[src.file]}:${src.line}`;
  }

  /** Adds one line of text, read from `src`. */
  add(text: string, src: LineSource): void {
    if (text.trim() === '') return;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new SweepError(`${this.where(src)}: not JSON: ${(e as Error).message}`);
    }
    this.addLine(parseSweepLine(raw, this.where(src)), src);
  }

  addLine(line: SweepLine, src: LineSource): void {
    const where = this.where(src);
    this.lines++;
    if (this.plan === null) {
      this.plan = { id: line.plan, total: line.total, where };
      this.jobs = new Jobs(line.total);
    } else if (line.plan !== this.plan.id || line.total !== this.plan.total) {
      throw new SweepError(
        `${where}: from plan ${line.plan} (${line.total} jobs), but ${this.plan.where} is from plan ${this.plan.id} (${this.plan.total} jobs): shards of different sweeps`,
      );
    }
    if (line.index >= line.total) throw new SweepError(`${where}: index ${line.index} is beyond the plan's ${line.total} jobs`);
    const j = this.jobs as Jobs;
    const key = stableKey(line.params);
    let combo = this.combos.get(key);
    if (combo === undefined) {
      combo = this.comboParams.length;
      this.combos.set(key, combo);
      this.comboParams.push(line.params);
    }
    const i = line.index;
    const ok = isOk(line);
    if (j.combo[i] >= 0) {
      if (j.seed[i] !== line.seed || j.combo[i] !== combo) {
        const prev = this.comboParams[j.combo[i]];
        const was = this.where({ file: j.srcFile[i], line: j.srcLine[i], offset: 0, length: 0 });
        throw new SweepError(
          `${where}: job ${i} has seed ${line.seed} ${formatParams(line.params)}, but ${was} has seed ${j.seed[i]} ${formatParams(prev)}`,
        );
      }
      this.duplicates++;
      // A rerun of the same job can differ (real threads): keep a failing copy over an ok one.
      if (!(j.ok[i] === 1 && !ok)) return;
    }
    j.combo[i] = combo;
    j.seed[i] = line.seed;
    j.ok[i] = ok ? 1 : 0;
    j.fps[i] = line.faultsPerSecond;
    j.crashes[i] = line.crashes;
    INVARIANTS.forEach((inv, k) => (j.violations[i * NINV + k] = line.violations[inv] ?? 0));
    j.srcFile[i] = src.file;
    j.srcLine[i] = src.line;
    j.srcOffset[i] = src.offset;
    j.srcLength[i] = src.length;
    if (ok) this.failing.delete(i);
    else this.failing.set(i, line);
    this.kept?.set(i, line);
  }

  /** Job indices present, ascending, with where their line is. */
  *present(): Generator<{ index: number; src: LineSource }> {
    const j = this.jobs;
    if (j === null) return;
    for (let i = 0; i < j.combo.length; i++) {
      if (j.combo[i] < 0) continue;
      yield { index: i, src: { file: j.srcFile[i], line: j.srcLine[i], offset: j.srcOffset[i], length: j.srcLength[i] } };
    }
  }

  has(index: number): boolean {
    return this.jobs !== null && index < this.jobs.combo.length && this.jobs.combo[index] >= 0;
  }

  get planId(): string | null {
    return this.plan?.id ?? null;
  }

  summary(): SweepSummary {
    const j = this.jobs;
    const total = this.plan?.total ?? 0;
    const missing: number[] = [];
    const acc = this.comboParams.map((params) => ({
      params,
      runs: 0,
      ok: 0,
      sum: 0,
      min: Infinity,
      max: -Infinity,
      violations: new Array<number>(NINV).fill(0),
      crashes: 0,
    }));
    let runs = 0;
    for (let i = 0; i < total; i++) {
      const c = (j as Jobs).combo[i];
      if (c < 0) {
        missing.push(i);
        continue;
      }
      runs++;
      const a = acc[c];
      const fps = (j as Jobs).fps[i];
      a.runs++;
      a.ok += (j as Jobs).ok[i];
      a.sum += fps;
      a.min = Math.min(a.min, fps);
      a.max = Math.max(a.max, fps);
      a.crashes += (j as Jobs).crashes[i];
      for (let k = 0; k < NINV; k++) a.violations[k] += (j as Jobs).violations[i * NINV + k];
    }
    // Combinations in the order of their first job, as the plan lists them.
    const first = new Map<number, number>();
    for (let i = total - 1; i >= 0; i--) if ((j as Jobs).combo[i] >= 0) first.set((j as Jobs).combo[i], i);
    const combinations: ComboSummary[] = acc
      .map((a, c) => ({ a, at: first.get(c) ?? Infinity }))
      .filter(({ a }) => a.runs > 0)
      .sort((x, y) => x.at - y.at)
      .map(({ a }) => ({
        params: a.params,
        runs: a.runs,
        ok: a.ok,
        faultsPerSecond: { mean: Math.round((a.sum / a.runs) * 10) / 10, min: a.min, max: a.max },
        violations: Object.fromEntries(INVARIANTS.map((inv, k) => [inv, a.violations[k]])),
        crashes: a.crashes,
      }));
    const failures: SweepFailure[] = [...this.failing.values()]
      .sort((a, b) => a.index - b.index)
      .map((l) => ({
        index: l.index,
        seed: l.seed,
        params: l.params,
        violations: Object.fromEntries(Object.entries(l.violations).filter(([, n]) => n > 0)),
        crashes: l.crashes,
        ...(l.error !== undefined ? { error: l.error } : {}),
        rerun: rerunCommand(l.params, l.seed),
      }));
    const lines = this.kept === null ? [] : [...this.kept.entries()].sort((a, b) => a[0] - b[0]).map(([, l]) => l);
    return {
      plan: this.plan?.id ?? '',
      total,
      runs,
      ok: runs - failures.length,
      duplicates: this.duplicates,
      missing,
      combinations,
      failures,
      lines,
    };
  }
}

/**
 * Merges sweep output held in memory (see SweepMerger), keeping the merged lines in the summary.
 * Plain strings are labelled `<input>:N`.
 */
export function mergeLines(input: Array<string | InputLine>): SweepSummary {
  const m = new SweepMerger(true);
  input.forEach((item, i) => {
    const l = typeof item === 'string' ? { text: item, file: '<input>', line: i + 1 } : item;
    m.add(l.text, { file: m.fileId(l.file), line: l.line, offset: 0, length: 0 });
  });
  return m.summary();
}
