// What every `experiment` command does around its run on each kernel version: outputs checked
// before anything starts, a progress bar, the HTML report, JSON or a table on stdout, where the
// outputs went, and the exit status.

import type { ReportData } from '../vmm/report/model.js';
import { checkOutputs } from '../vmm/io/outputs.js';
import { commandLine, out, perKernel, sayWritten } from './args.js';
import { EXIT } from './exit.js';
import { Progress } from './progress.js';

export interface PerKernelRun<R> {
  /** The command's name, as in messages (`experiment multi-vm`). */
  command: string;
  kernels: readonly string[];
  o: { json?: boolean; trace?: string; report?: string };
  signal: AbortSignal;
  run(trace: ((k: string) => string | undefined) | undefined, onProgress: (f: number, what: string) => void): Promise<R[]>;
  interrupted(row: R): boolean;
  report(rows: R[], command: string): ReportData;
  json(rows: R[]): unknown;
  text(rows: R[]): string;
  ok(row: R): boolean;
}

/** Runs `e` and reports it; returns the exit status (0, 1 a run crashed or broke a rule, 130). */
export async function runPerKernel<R>(e: PerKernelRun<R>): Promise<number> {
  const trace = perKernel(e.o.trace);
  checkOutputs([...e.kernels.map((k) => out('--trace', trace?.(k))), out('--report', e.o.report)]);
  const since = Date.now();
  const progress = new Progress(false);
  const rows = await e.run(trace, (f, what) => progress.update(f, what));
  progress.done();
  const interrupted = e.signal.aborted || rows.some((r) => e.interrupted(r));
  if (e.o.report) (await import('../vmm/report/html.js')).writeReport(e.o.report, e.report(rows, commandLine()));
  if (e.o.json) process.stdout.write(`${JSON.stringify(e.json(rows), null, 2)}\n`);
  else process.stdout.write(`${e.text(rows)}${interrupted ? '\nINTERRUPTED: only the kernel versions above ran' : ''}\n`);
  sayWritten(e.command, since, [
    ...e.kernels.map((k): [string, string | undefined] => [`trace of ${k}`, trace?.(k)]),
    ['report', e.o.report],
  ]);
  return interrupted ? EXIT.INTERRUPTED : rows.every((r) => e.ok(r)) ? EXIT.PASS : EXIT.FAIL;
}
