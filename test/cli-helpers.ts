// Running the built CLI as a child process, and per-test temp directories that are removed.

import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onTestFinished } from 'vitest';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const bin = join(root, 'bin/gmem-sandbox.js');

/** A fresh directory under the run's TMPDIR, removed when the test ends. */
export function tempDir(prefix = 'gmem-t-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `gmem-sandbox ...args` to the end. */
export function cli(args: string[], o: { cwd?: string; timeoutMs?: number; input?: string; nodeArgs?: string[] } = {}): CliResult {
  const t0 = performance.now();
  const r: SpawnSyncReturns<string> = spawnSync(process.execPath, [...(o.nodeArgs ?? []), bin, ...args], {
    encoding: 'utf8',
    cwd: o.cwd ?? root,
    timeout: o.timeoutMs ?? 60_000,
    killSignal: 'SIGKILL',
    ...(o.input !== undefined ? { input: o.input } : {}),
    maxBuffer: 64 << 20,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - t0 };
}

/** A stack trace line: never shown to a user (unless GMEM_DEBUG is set). */
export const STACK = /^\s+at .+\(?.*:\d+:\d+\)?$/m;

export interface Running {
  pid: number;
  stdout(): string;
  stderr(): string;
  /** Resolves once stderr matches (progress shows the run is under way). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<{ status: number | null; signal: NodeJS.Signals | null; at: number }>;
  kill(sig: NodeJS.Signals): number;
}

/** Starts a command without waiting for it (for signals). */
export function start(cmd: string, args: string[], o: { cwd?: string } = {}): Running {
  const child = spawn(cmd, args, { cwd: o.cwd ?? root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<{ status: number | null; signal: NodeJS.Signals | null; at: number }>((res) =>
    child.on('close', (status, signal) => res({ status, signal, at: performance.now() })),
  );
  return {
    pid: child.pid as number,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: (sig) => {
      child.kill(sig);
      return performance.now();
    },
    waitFor: (re, timeoutMs = 30_000) =>
      new Promise<void>((res, rej) => {
        const end = Date.now() + timeoutMs;
        const tick = () => {
          if (re.test(err)) return res();
          if (Date.now() > end) return rej(new Error(`stderr never matched ${re}: ${err.slice(-500)}`));
          setTimeout(tick, 50);
        };
        tick();
      }),
  };
}
