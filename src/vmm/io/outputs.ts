// Output files (traces, reports, saved schedules, sweep lines). Paths are checked before any work
// starts, so that a run never does its work only to fail at the end; a write that still fails
// afterwards must not cost the run its printed result or its exit status, so it is reported on
// stderr, naming what was not written, instead of thrown.

import { accessSync, constants, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** A usage or input error: exit status 2, and nothing was started. */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

export interface OutputPath {
  /** The option that names it, for the message (`--trace`). */
  flag: string;
  path: string;
  /** 'file' (created or replaced) or 'dir'; missing parents are created when written. */
  kind: 'file' | 'dir';
}

/** Why `p` cannot be written as a `kind`, or null, as far as its path tells. Creates nothing. */
export function outputProblem(p: string, kind: 'file' | 'dir'): string | null {
  const abs = resolve(p);
  if (existsSync(abs)) {
    const st = statSync(abs);
    if (kind === 'file' && st.isDirectory()) return 'is a directory, not a file';
    if (kind === 'dir' && !st.isDirectory()) return 'exists and is not a directory';
    try {
      accessSync(abs, constants.W_OK);
    } catch {
      return 'is not writable';
    }
    return null;
  }
  // Missing parents are created at write time, so the nearest existing ancestor decides: it must
  // be a writable directory (a file there, as in afile/t.json, can never have children).
  let dir = dirname(abs);
  while (!existsSync(dir)) dir = dirname(dir);
  if (!statSync(dir).isDirectory()) return `${dir} is not a directory`;
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    return `directory ${dir} is not writable`;
  }
  return null;
}

/**
 * Creates `dir` and its missing parents one level at a time. Node's own recursive mkdir loops
 * without end (in C++, deaf to signals) where a parent exists but refuses children, as /proc
 * does; a plain mkdir per level fails there with the kernel's errno instead.
 */
export function mkdirs(dir: string): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) mkdirSync(d);
}

/**
 * Throws an InputError naming the first output that cannot be written. The directories an
 * output needs are created here, before any work: a filesystem that refuses them (a read-only
 * mount, /proc) is only found out by trying.
 */
export function checkOutputs(outputs: Array<OutputPath | undefined>): void {
  for (const o of outputs) {
    if (o === undefined) continue;
    const why = outputProblem(o.path, o.kind);
    if (why !== null) throw new InputError(`${o.flag} ${o.path}: cannot be written: ${why}`);
    try {
      mkdirs(o.kind === 'dir' ? o.path : dirname(resolve(o.path)));
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new InputError(`${o.flag} ${o.path}: cannot be written: mkdir ${err.path ?? o.path} failed (${err.code ?? err.message})`);
    }
  }
}

/** Writes a whole file; on failure says on stderr what was not written and returns false. */
export function writeOutput(path: string, data: string | (() => string)): boolean {
  try {
    mkdirs(dirname(path));
    writeFileSync(path, typeof data === 'string' ? data : data());
    return true;
  } catch (e) {
    process.stderr.write(`gmem-sandbox: not written: ${path}: ${(e as Error).message}\n`);
    return false;
  }
}
