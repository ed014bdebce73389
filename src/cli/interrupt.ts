// One interrupt handler for every command. SIGINT and SIGTERM (and the same sent to npx) abort
// the running command's signal; the command stops its workers, prints what it has marked
// "interrupted", and exits 130. A command that has not finished a second later, or a second
// signal, ends the process at once with the same status: nothing may keep a user waiting.

import { launcherChain, launcherGone, launcherShell, wakeups } from './launcher.js';

export const STOP_WITHIN_MS = 1000;
/**
 * Signals this close together are one interrupt: GNU timeout, and a terminal's Ctrl-C under
 * npx, signal the whole process group, so the same request arrives twice at once.
 */
export const SAME_SIGNAL_MS = 300;

export interface Interrupt {
  signal: AbortSignal;
  /** What stopped the command ('SIGINT', 'SIGTERM', 'EPIPE'), once it is stopped. */
  reason(): string | null;
  dispose(): void;
}

export function interruptible(command: string, exit: (code: number) => never = (c) => process.exit(c)): Interrupt {
  const ac = new AbortController();
  let why: string | null = null;
  let since = 0;
  let timer: NodeJS.Timeout | undefined;
  const stop = (reason: string, quiet = false): void => {
    if (why !== null) {
      if (!quiet && performance.now() - since > SAME_SIGNAL_MS) exit(130);
      return;
    }
    why = reason;
    since = performance.now();
    if (!quiet) process.stderr.write(`\ngmem-sandbox ${command}: ${reason}: stopping, the partial result follows\n`);
    ac.abort(new Error(reason));
    timer = setTimeout(() => {
      process.stderr.write(`gmem-sandbox ${command}: not stopped within ${STOP_WITHIN_MS} ms of ${reason}; exiting\n`);
      exit(130);
    }, STOP_WITHIN_MS);
    timer.unref();
  };
  const onSigint = () => stop('SIGINT');
  const onSigterm = () => stop('SIGTERM');
  // A reader that went away (`sweep | head`) ends the run like an interrupt, without a word on a
  // pipe that is closed.
  const onStdoutError = (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') stop('EPIPE', true);
    else process.stderr.write(`gmem-sandbox ${command}: stdout: ${e.message}\n`);
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  process.stdout.on('error', onStdoutError);
  // A signal to `npx gmem-sandbox` does not reach this process (see launcher.ts).
  const chain = launcherChain();
  const shell = launcherShell(chain);
  const shellWakeups = shell === null ? -1 : wakeups(shell);
  const orphanWatch = setInterval(() => {
    if (chain.length > 0 && launcherGone(chain)) {
      clearInterval(orphanWatch);
      stop('SIGTERM (npx or npm exited)');
    } else if (shell !== null && shellWakeups >= 0 && wakeups(shell) > shellWakeups) {
      clearInterval(orphanWatch);
      stop('SIGINT (passed by npx to its shell)');
    }
  }, 200);
  orphanWatch.unref();
  return {
    signal: ac.signal,
    reason: () => why,
    dispose() {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      clearInterval(orphanWatch);
      clearTimeout(timer);
    },
  };
}
