// `gmem-sandbox experiment`: one-command experiments with readable results, each run on every
// kernel version it compares (multi-vm, policies, and conversion in src/cli/conversion.ts).

import { type Command, Option } from 'commander';
import { POLICIES, type PolicyName } from '../gmem/policy.js';
import { KERNEL_CHOICES, type KernelVersionName } from '../gmem/version.js';
import type { KernelSet } from '../vmm/experiments/experiments.js';
import { intArg, numArg } from './args.js';
import { registerConversion } from './conversion.js';
import { action } from './exit.js';
import { runPerKernel } from './per-kernel.js';

/** --kernel V|all and its alias --policy P|all: the versions to run, in order (all by default). */
async function kernelsArg(o: { kernel?: KernelSet; policy?: PolicyName | 'all' }): Promise<KernelVersionName[]> {
  const policies = o.policy === undefined ? undefined : o.policy === 'all' ? [...POLICIES] : [o.policy];
  return (await import('../vmm/experiments/experiments.js')).experimentKernels({ kernel: o.kernel, policies }, 'policy');
}

/** Adds `experiment` and its commands to the program; returns it. */
export function registerExperiments(program: Command): Command {
  const experiment = program.command('experiment').description('one-command experiments with readable results');
  registerMultiVm(experiment);
  registerPolicies(experiment);
  registerConversion(experiment);
  return experiment;
}

function registerMultiVm(experiment: Command): void {
  experiment
    .command('multi-vm')
    .description(
      'N SNP VMs bound to one guest_memfd (link), each faulting the same pages: who gets each page, and what it costs, per kernel version',
    )
    .option('--vms <n>', 'VMs bound to the one inode', intArg('--vms', 2, 8), 2)
    .addOption(new Option('--kernel <version>', 'modelled kernel version, or all (the default)').choices([...KERNEL_CHOICES, 'all']))
    .addOption(
      new Option('--policy <policy>', 'prepare policy, or all: an alias for the kernel versions they were modelled on').choices([
        ...POLICIES,
        'all',
      ]),
    )
    .option('--duration <seconds>', 'run length per kernel version', numArg('--duration', 0.1, 600), 1)
    .option('--pages <n>', 'pages every VM maps', intArg('--pages', 1, 1 << 16), 256)
    .option('--seed <n>', 'seed', intArg('--seed', 0, 2 ** 32 - 1), 1)
    .option('--json', 'print results as JSON')
    .option('--trace <file.json>', 'write a Chrome trace per kernel version (FILE.<kernel>.json)')
    .option('--report <file.html>', 'write a self-contained HTML report')
    .action(
      action('experiment multi-vm', async (it, o) => {
        const [{ multiVmExperiment }, { reportFromMultiVm }, { formatMultiVm }] = await Promise.all([
          import('../vmm/experiments/experiments.js'),
          import('../vmm/report/build.js'),
          import('./format.js'),
        ]);
        const kernels = await kernelsArg(o);
        return runPerKernel({
          command: 'experiment multi-vm',
          kernels,
          o,
          signal: it.signal,
          run: (trace, onProgress) =>
            multiVmExperiment({
              vms: o.vms,
              kernel: kernels,
              durationMs: Math.round(o.duration * 1000),
              seed: o.seed,
              pages: o.pages,
              ...(trace ? { trace } : {}),
              signal: it.signal,
              onProgress,
            }),
          interrupted: (r) => r.run.interrupted,
          report: reportFromMultiVm,
          json: (rows) => rows.map(({ run, ...r }) => ({ ...r, ok: run.ok, violations: run.violations, interrupted: run.interrupted })),
          text: formatMultiVm,
          ok: (r) => r.run.crashes.length === 0,
        });
      }),
    );
}

function registerPolicies(experiment: Command): void {
  experiment
    .command('policies')
    .description('one workload on each kernel version (and so each prepare policy), side by side')
    .addOption(new Option('--kernel <version>', 'modelled kernel version, or all (the default)').choices([...KERNEL_CHOICES, 'all']))
    .option('--duration <seconds>', 'run length per kernel version', numArg('--duration', 0.1, 600), 2)
    .option('--seed <n>', 'seed', intArg('--seed', 0, 2 ** 32 - 1), 1)
    .option('--json', 'print results as JSON')
    .option('--trace <file.json>', 'write a Chrome trace per kernel version (FILE.<kernel>.json)')
    .option('--report <file.html>', 'write a self-contained HTML report')
    .action(
      action('experiment policies', async (it, o) => {
        const [{ policiesExperiment }, { reportFromPolicies }, { formatPolicies }] = await Promise.all([
          import('../vmm/experiments/experiments.js'),
          import('../vmm/report/build.js'),
          import('./format.js'),
        ]);
        const kernels = await kernelsArg(o);
        return runPerKernel({
          command: 'experiment policies',
          kernels,
          o,
          signal: it.signal,
          run: (trace, onProgress) =>
            policiesExperiment({
              kernel: kernels,
              durationMs: Math.round(o.duration * 1000),
              seed: o.seed,
              ...(trace ? { trace } : {}),
              signal: it.signal,
              onProgress,
            }),
          interrupted: (r) => r.run.interrupted,
          report: reportFromPolicies,
          json: (rows) => rows.map(({ run, ...r }) => ({ ...r, interrupted: run.interrupted })),
          text: formatPolicies,
          ok: (r) => r.violations === 0 && r.run.crashes.length === 0,
        });
      }),
    );
}
