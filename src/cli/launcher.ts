// `npx gmem-sandbox` starts this process through a chain: npx, then `npm exec`, then `sh -c`.
// A signal sent to npx reaches none of the others directly: npm passes it to the shell only, and
// the shell, waiting for us, keeps it to itself. So the launchers above us (npm, npx and the
// shell npm started, nothing else: a run started from a script that exits stays alive) are
// watched: one that is gone counts as SIGTERM, and the shell waking up counts as SIGINT. That
// shell sleeps in wait4() for its one child, us, and wakes only for a signal: its context-switch
// count moves when npm forwards one. Linux /proc only; elsewhere nothing is watched.

import { readFileSync } from 'node:fs';

interface ProcInfo {
  ppid: number;
  state: string;
  cmd: string;
}

function proc(pid: number): ProcInfo | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain spaces: the fields follow the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    return { state: f[0], ppid: Number(f[1]), cmd };
  } catch {
    return null;
  }
}

const SHELL = /^(\/bin\/|\/usr\/bin\/)?(sh|dash|bash) -c /;
const LAUNCHER = new RegExp(`(^|/)(npx|npm)(-cli\\.js)?( |$)|^npm exec |${SHELL.source}`);

/** The pids of npm/npx launchers (and the shell they run us in) directly above this process. */
export function launcherChain(): number[] {
  const chain: number[] = [];
  let pid = process.ppid;
  for (let depth = 0; depth < 8 && pid > 1; depth++) {
    const p = proc(pid);
    if (p === null || !LAUNCHER.test(p.cmd)) break;
    chain.push(pid);
    pid = p.ppid;
  }
  return chain;
}

/** The shell npm started us in (`sh -c ...`), if it is in the chain. */
export function launcherShell(chain: readonly number[]): number | null {
  for (const pid of chain) {
    const p = proc(pid);
    if (p !== null && SHELL.test(p.cmd)) return pid;
  }
  return null;
}

/** How often `pid` has slept and woken (voluntary context switches), or -1 if it is gone. */
export function wakeups(pid: number): number {
  try {
    const m = /^voluntary_ctxt_switches:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? -1 : Number(m[1]);
  } catch {
    return -1;
  }
}

/** True when one of `chain` has exited (gone, or a zombie nobody reaped yet). */
export function launcherGone(chain: readonly number[]): boolean {
  return chain.some((pid) => {
    const p = proc(pid);
    return p === null || p.state === 'Z' || p.state === 'X';
  });
}
