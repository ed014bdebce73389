// Running the built CLI as a child process, and per-test temp directories that are removed.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onTestFinished } from 'vitest';

export const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
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

/**
 * Runs `gmem-sandbox ...args` to the end. Asynchronous: a test worker blocked in a synchronous
 * wait for long starves vitest's own messages to it.
 */
export function cli(args: string[], o: { cwd?: string; timeoutMs?: number; input?: string; nodeArgs?: string[] } = {}): Promise<CliResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...(o.nodeArgs ?? []), bin, ...args], { cwd: o.cwd ?? root, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.stdin.on('error', () => undefined);
    child.stdin.end(o.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, ms: performance.now() - t0 });
    });
  });
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
