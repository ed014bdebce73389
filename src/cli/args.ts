// Helpers every command shares: option value parsers (a bad value is a usage error, exit 2), the
// command line as typed, and where the outputs went.

import { existsSync, statSync } from 'node:fs';
import { InvalidArgumentError } from 'commander';

/** An integer option from `min` to `max`. */
export function intArg(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got '${v}'`);
    return n;
  };
}
/** A finite number option from `min` to `max`. */
export function numArg(name: string, min: number, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}, got '${v}'`);
    return n;
  };
}

/** The command line as typed, for reports (so a run can be rerun from its report). */
export function commandLine(): string {
  return ['gmem-sandbox', ...process.argv.slice(2)]
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`))
    .join(' ');
}

/**
 * Says on stderr where each output went (stdout stays the result's, --json included): a file
 * whose write failed was already reported as not written.
 */
export function sayWritten(cmd: string, since: number, outputs: Array<[string, string | undefined]>): void {
  for (const [what, path] of outputs) {
    if (path === undefined || !existsSync(path) || statSync(path).mtimeMs < since) continue;
    process.stderr.write(`gmem-sandbox ${cmd}: wrote the ${what} to ${path}\n`);
  }
}

/** An output option, for the check made before any work starts. */
export const out = (flag: string, path: string | undefined, kind: 'file' | 'dir' = 'file') =>
  path === undefined ? undefined : { flag, path, kind };

/** FILE.json -> FILE.<kernel>.json: one trace per kernel version run. */
export function perKernel(file: string | undefined): ((k: string) => string | undefined) | undefined {
  return file === undefined ? undefined : (k) => file.replace(/(\.[^./]+)?$/, `.${k}$1`);
}
