// Running the built CLI as a child process, and per-test temp directories that are removed.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onTestFinished } from 'vitest';

export const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const bin = join(root, 'bin/gmem-sandbox.js');

/**
 * A fresh directory under the run's TMPDIR, removed when the test ends. A concurrent test passes
 * its context's onTestFinished: the global one knows no test that runs beside another.
 */
export function tempDir(prefix = 'gmem-t-', finished: (fn: () => void) => void = onTestFinished): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  finished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** CPU time a process (all its threads) has used, in clock ticks (Linux /proc). */
function cpuTicks(pid: number): number {
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
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
  /**
   * Resolves once the process has used at most `maxTicks` clock ticks of CPU over `windowMs`: it is
   * blocked in a wait (a busy process, even on a loaded machine, uses several times that).
   */
  waitIdle(windowMs?: number, maxTicks?: number, timeoutMs?: number): Promise<void>;
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
    waitIdle: async (windowMs = 400, maxTicks = 2, timeoutMs = 30_000) => {
      const end = Date.now() + timeoutMs;
      const seen: Array<{ at: number; ticks: number }> = [];
      for (;;) {
        const now = Date.now();
        const ticks = cpuTicks(child.pid as number);
        seen.push({ at: now, ticks });
        // The newest sample at least a window old: how much CPU the process used since.
        const start = seen.findLast((x) => x.at <= now - windowMs);
        if (start !== undefined && ticks - start.ticks <= maxTicks) return;
        if (now > end) throw new Error(`the process never went idle: ${err.slice(-500)}`);
        await new Promise((res) => setTimeout(res, 50));
      }
    },
  };
}
