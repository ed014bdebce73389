// `gmem-sandbox experiment conversion`: 7.0's per-VM conversions against 7.4's in-place ones.

import { type Command, Option } from 'commander';
import {
  CONVERSION_KERNELS,
  type ConversionKernel,
  type ConversionOptions,
  MAX_CONVERSION_CHUNK,
  MAX_CONVERSION_PAGES,
  checkConversionOptions,
} from '../vmm/experiments/conversion-options.js';
import { ArgumentError } from '../vmm/sandbox/errors.js';
import { action } from './exit.js';
import { runPerKernel } from './per-kernel.js';

/** The library's field names as the command line spells them. */
const FLAGS: Record<string, string> = {
  kernel: '--kernel',
  pages: '--pages',
  chunk: '--chunk',
  conversions: '--conversions',
  pinMs: '--pin-ms',
  holdPin: '--hold-pin',
  seed: '--seed',
};

interface Opts {
  kernel: ConversionKernel | 'all';
  duration: string;
  conversions: string;
  pages: string;
  chunk: string;
  pinMs: string;
  holdPin?: string;
  faults: boolean;
  seed: string;
  json?: boolean;
  trace?: string;
  report?: string;
}

/** The options as the library takes them, checked: a bad one is an ArgumentError naming its flag. */
function optionsOf(o: Opts): ConversionOptions {
  const seconds = Number(o.duration);
  if (!Number.isFinite(seconds) || seconds < 0.01 || seconds > 600)
    throw new ArgumentError('--duration', `must be a number of seconds from 0.01 to 600, got '${o.duration}'`);
  for (const [flag, raw] of [
    ['--conversions', o.conversions],
    ['--pages', o.pages],
    ['--chunk', o.chunk],
    ['--pin-ms', o.pinMs],
    ['--seed', o.seed],
    ['--hold-pin', o.holdPin],
  ] as Array<[string, string | undefined]>)
    if (raw !== undefined && (raw.trim() === '' || !Number.isFinite(Number(raw))))
      throw new ArgumentError(flag, `must be a number, got '${raw}'`);
  const opts: ConversionOptions = {
    kernel: o.kernel,
    durationMs: Math.round(seconds * 1000),
    conversions: Number(o.conversions),
    pages: Number(o.pages),
    chunk: Number(o.chunk),
    pinMs: Number(o.pinMs),
    faults: o.faults,
    seed: Number(o.seed),
    ...(o.holdPin !== undefined ? { holdPin: Number(o.holdPin) } : {}),
  };
  try {
    checkConversionOptions(opts);
  } catch (e) {
    if (e instanceof ArgumentError) throw new ArgumentError(FLAGS[e.field] ?? e.field, e.rule);
    throw e;
  }
  return opts;
}

export function registerConversion(experiment: Command): void {
  experiment
    .command('conversion')
    .description(
      'a guest converts memory shared <=> private while the VMM faults and pins pages: 7.0 (per-VM attributes, PUNCH_HOLE after) against 7.4 (in place)',
    )
    .addOption(
      new Option('--kernel <version>', 'kernel version, or all (the default)').choices([...CONVERSION_KERNELS, 'all']).default('all'),
    )
    .option('--duration <seconds>', 'run length per kernel version', '1')
    .option('--conversions <n>', 'stop after this many conversion attempts per version instead (0: by --duration)', '0')
    .option('--pages <n>', `guest memory in pages, a whole number of chunks (at most ${MAX_CONVERSION_PAGES})`, '64')
    .option('--chunk <pages>', `pages one conversion covers (1: 4 KiB, ${MAX_CONVERSION_CHUNK}: 2 MiB)`, '1')
    .option('--pin-ms <ms>', 'how long the VMM holds each GUP pin (0: no pins)', '1')
    .option('--hold-pin <page>', 'a page the VMM pins before the guest starts and holds to the end')
    .option('--no-faults', 'the VMM does not fault pages into its mapping')
    .option('--seed <n>', 'seed of the VMM thread', '1')
    .option('--json', 'print results as JSON')
    .option('--trace <file.json>', 'write a Chrome trace per kernel version (FILE.<kernel>.json)')
    .option('--report <file.html>', 'write a self-contained HTML report')
    .action(
      action('experiment conversion', async (it, o: Opts) => {
        const opts = optionsOf(o);
        const kernels = checkConversionOptions(opts);
        const [{ conversionExperiment }, { reportFromConversion }, { formatConversion }] = await Promise.all([
          import('../vmm/experiments/conversion.js'),
          import('../vmm/report/conversion.js'),
          import('./format.js'),
        ]);
        return runPerKernel({
          command: 'experiment conversion',
          kernels,
          o,
          signal: it.signal,
          run: (trace, onProgress) => conversionExperiment({ ...opts, ...(trace ? { trace } : {}), signal: it.signal, onProgress }),
          interrupted: (r) => r.interrupted,
          report: (rows, command) => reportFromConversion(rows, command, opts.seed),
          json: (rows) => rows,
          text: formatConversion,
          ok: (r) => r.crashes.length === 0,
        });
      }),
    );
}
