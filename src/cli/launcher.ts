// `npx gmem-sandbox` starts this process through a chain: npx, then `npm exec`, then `sh -c`.
// A SIGTERM sent to npx reaches none of the others, and npm passes signals only to the shell,
// which does not pass them on: this process would run on, orphaned. So the launchers above us
// (npm, npx and the shell npm started, nothing else: a run started from a script that exits stays
// alive) are watched, and one that is gone counts as SIGTERM. Linux /proc only; elsewhere nothing
// is watched.

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

const LAUNCHER = /(^|\/)(npx|npm)(-cli\.js)?( |$)|^npm exec |^(\/bin\/|\/usr\/bin\/)?(sh|dash|bash) -c /;

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

/** True when one of `chain` has exited (gone, or a zombie nobody reaped yet). */
export function launcherGone(chain: readonly number[]): boolean {
  return chain.some((pid) => {
    const p = proc(pid);
    return p === null || p.state === 'Z' || p.state === 'X';
  });
}
