// An exclusive lock on an output file that a run appends to (sweep --out): two runs appending to
// one file would interleave two plans' lines, which merge then refuses. The lock is a file beside
// it, created exclusively, holding the owner's pid; a lock whose owner is gone is taken over.

import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { InputError } from './outputs.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, as another user's process.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ownerOf(lock: string): number {
  try {
    return Number(readFileSync(lock, 'utf8').trim());
  } catch {
    return NaN;
  }
}

/** Takes `path`.lock for this process (flag names the option, for the message); returns its release. */
export function lockOutput(flag: string, path: string): () => void {
  const lock = `${path}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0)
        throw new InputError(`${flag} ${path}: cannot lock: ${(e as Error).message}`);
      const pid = ownerOf(lock);
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
        throw new InputError(`${flag} ${path}: in use by another run (pid ${pid}, lock ${lock}); wait for it to end or write elsewhere`);
      }
      // Its owner died without releasing it (a SIGKILL): the lock is stale.
      unlinkSync(lock);
    }
  }
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    try {
      if (ownerOf(lock) === process.pid) unlinkSync(lock);
    } catch {
      // Already gone: nothing to release.
    }
  };
  // An interrupt that ends the process at once still leaves no lock behind.
  process.on('exit', release);
  return release;
}
