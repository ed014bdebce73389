// `gmem-sandbox sweep` and `gmem-sandbox merge`: their options. The commands themselves
// (src/cli/sweep-command.ts) are loaded only when one of them runs.

import { type Command, InvalidArgumentError } from 'commander';
import { PARAM_HELP } from '../vmm/sweep/params.js';
import { action } from './exit.js';
import type { MergeCliOptions, SweepCliOptions } from './sweep-command.js';

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function jobsArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError(`--jobs must be an integer from 1 to 64, got '${v}'`);
  return n;
}

export function registerSweep(program: Command): void {
  program
    .command('sweep')
    .description('run stress over a cartesian product of parameters x seeds on a worker pool, one JSON line per job')
    .option(
      '--param <name=values>',
      `a parameter and its values, comma-separated, 'all' for kernel/policy/vm-type/pattern (repeatable); names: ${PARAM_HELP}`,
      collect,
      [],
    )
    .option('--seeds <list>', 'seeds: A..B (inclusive), a comma list, or both (0..9,100)', '0')
    .option('--shard <K/N>', 'run only shard K of N (K 0-based, 0 <= K < N: jobs with index % N == K), e.g. $JOB_COMPLETION_INDEX/N')
    .option('--jobs <n>', 'jobs running at once (each job runs 2 + vCPUs threads itself)', jobsArg, 1)
    .option(
      '--out <file>',
      'append the JSON lines to this file instead of printing them (lines already there are kept; they must be of this sweep)',
    )
    .option('--resume', 'with --out: skip the jobs whose lines are already in the file')
    .option('--summary <file>', 'also write the merged summary as JSON to this file')
    .option('--dry-run', 'print the planned jobs of this shard as JSON lines ({index, seed, params}) and run nothing')
    .option('--quiet', 'no progress or summary table on stderr')
    .option('--trace <file.json>', "write each job's Chrome trace, the job index inserted before the extension (t.json -> t.7.json)")
    .action(action('sweep', async (it, o: SweepCliOptions) => (await import('./sweep-command.js')).sweepCommand(o, it.signal)));

  program
    .command('merge')
    .description("join sweep shards' JSON lines: de-duplicate, sort, summarise per parameter combination, list failing jobs")
    .argument('<files...>', "sweep output files ('-' for stdin)")
    .option('--json', 'print the summary as JSON')
    .option('--out <file>', 'write the merged lines (de-duplicated, sorted by index) to this file')
    .action(
      action('merge', async (it, files: string[], o: MergeCliOptions) =>
        (await import('./sweep-command.js')).mergeCommand(files, o, it.signal),
      ),
    );
}
