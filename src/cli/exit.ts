// One exit-status convention for every command, and the wrapper every command's action runs in:
// 0 pass; 1 a violation, a planted bug not found, or a failed job; 2 a usage or input error
// (nothing was started); 130 interrupted.

import { CommanderError, InvalidArgumentError } from 'commander';
import { SandboxLimitError } from '../shm/limits.js';
import { ArgumentError } from '../vmm/sandbox/errors.js';
import { InputError } from '../vmm/io/outputs.js';
import { ScenarioError, ScheduleError, SweepError } from '../vmm/io/problems.js';
import { type Interrupt, interruptible } from './interrupt.js';

export const EXIT = { PASS: 0, FAIL: 1, USAGE: 2, INTERRUPTED: 130 } as const;

export const EXIT_HELP = `
Exit status (every command):
  0    pass
  1    a violation, a planted bug not found, or a failed job
  2    a usage or input error (bad option, bad file, an output that cannot be written): nothing ran
  130  interrupted (SIGINT, SIGTERM): the partial result is printed, marked "interrupted"`;

/** Errors that mean the user asked for something invalid: exit 2, and nothing was started. */
export function isInputError(e: unknown): e is Error {
  return (
    e instanceof InputError ||
    e instanceof ArgumentError ||
    e instanceof SandboxLimitError ||
    e instanceof ScenarioError ||
    e instanceof ScheduleError ||
    e instanceof SweepError ||
    e instanceof InvalidArgumentError
  );
}

/**
 * Wraps a command's action: it gets the interrupt signal and returns its exit status. An input
 * error is printed as one line with status 2; an interrupt turns any status into 130; anything
 * else is a failure of the run (status 1), printed without a stack trace unless GMEM_DEBUG is set.
 */
export function action<A extends unknown[]>(
  name: string,
  fn: (it: Interrupt, ...args: A) => Promise<number> | number,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const it = interruptible(name);
    // A promise that can never settle must not end the process silently with status 0 once the
    // event loop is empty: the command holds the loop open until it returns.
    const hold = setInterval(() => undefined, 1 << 30);
    let code: number;
    try {
      code = await fn(it, ...args);
    } catch (e) {
      if (it.signal.aborted) {
        process.stderr.write(`gmem-sandbox ${name}: interrupted before there was a result\n`);
        code = EXIT.INTERRUPTED;
      } else if (isInputError(e)) {
        process.stderr.write(`gmem-sandbox ${name}: ${e.message}\n`);
        code = EXIT.USAGE;
      } else {
        process.stderr.write(`gmem-sandbox ${name}: failed: ${e instanceof Error ? e.message : String(e)}\n`);
        if (process.env.GMEM_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
        code = EXIT.FAIL;
      }
    }
    if (it.signal.aborted) code = EXIT.INTERRUPTED;
    clearInterval(hold);
    it.dispose();
    process.exitCode = code;
  };
}

/** Commander's own errors (unknown option, bad value, missing argument) are usage errors. */
export function commanderExit(e: CommanderError): number {
  return e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? EXIT.PASS : EXIT.USAGE;
}
