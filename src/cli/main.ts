// The gmem-sandbox command line.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { BUG_NAMES } from '../gmem/bugs.js';
import { POLICIES } from '../gmem/policy.js';
import { KERNEL_CHOICES, PATCH_NAMES, UPSTREAM } from '../gmem/version.js';
import { DEFAULT_POINTS, POINTS_MODES } from '../shm/points.js';
import { checkOutputs } from '../vmm/io/outputs.js';
import { moduleParamOption, parseModuleParamArgs } from './module-params.js';
import { DEFAULT_WORKLOAD, MAX_EXPLORE_JOBS, MAX_VMM_THREADS } from '../vmm/workload/explore.js';
import { parseMix } from '../vmm/workload/mix.js';
import { PATTERNS } from '../vcpu-workers/guest-workload.js';
import { parseShard } from '../vmm/io/shard.js';
import { registerSweep } from './sweep.js';
import { registerExperiments } from './experiment.js';
import { commandLine, intArg, numArg, out, sayWritten } from './args.js';
import { CATALOGUE } from '../vmm/explore/catalogue.js';
import { Progress } from './progress.js';
import { EXIT, EXIT_HELP, action, commanderExit } from './exit.js';
import { STRESS_WORKLOAD_DEFAULTS } from '../vmm/workload/stress.js';

/** --shard K/N, 0-based. */
function shardArg(v: string): { k: number; n: number } {
  try {
    return parseShard(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/** --patch NAME (repeatable, or several names after one --patch): posted patches on top of the kernel version. */
const patchOption = (what: string) =>
  new Option('--patch <name...>', `apply a posted patch on top of the kernel version${what} (see \`gmem-sandbox catalogue\`)`).choices([
    ...PATCH_NAMES,
  ]);

/** A VMM op mix ("punch=3,convert=1"), checked at parse time. */
function mixArg(v: string): string {
  try {
    parseMix(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return v;
}

const program = new Command();
program
  .name('gmem-sandbox')
  .description('KVM guest_memfd, the KVM fault path and SEV-SNP registration, modelled on real threads and shared memory')
  .version(packageVersion(), '-V, --version', 'print the version and exit')
  .showHelpAfterError('(add --help for usage)')
  // Commander's own errors then reach one place, which gives them the usage status 2.
  .exitOverride();

/** This package's version, from its package.json (found from the built or the source tree). */
function packageVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dirname(dir) !== dir; dir = dirname(dir)) {
    const f = join(dir, 'package.json');
    if (existsSync(f)) {
      const pkg = JSON.parse(readFileSync(f, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'gmem-sandbox') return pkg.version ?? 'unknown';
    }
  }
  return 'unknown';
}

program
  .command('stress')
  .description('vCPU workers fault pages while the VMM punches holes, converts and pre-faults; the auditor checks every invariant')
  .option(
    '--vcpus <n>',
    'vCPU worker threads per VM (and at most 61 over all VMs; each VM also gives the VMM a vCPU)',
    intArg('--vcpus', 1, 31),
    2,
  )
  .option('--vms <n>', 'VMs bound to one guest_memfd (linked)', intArg('--vms', 1, 8), 1)
  .option('--memory <size>', 'host memory for guest_memfd (at most 4GiB)', '64MiB')
  .option('--guest-memory <size>', 'guest memory each VM maps and touches (default: min(memory/4, 16MiB))')
  .option('--duration <seconds>', 'how long the campaign runs', numArg('--duration', 0.1, 3600), 5)
  .addOption(
    new Option('--kernel <version>', `modelled kernel version, upstream = ${UPSTREAM} (default 6.11)`).choices([...KERNEL_CHOICES]),
  )
  .addOption(new Option('--policy <policy>', 'prepare policy: an alias for the kernel version it was modelled on').choices([...POLICIES]))
  .addOption(patchOption(''))
  .addOption(moduleParamOption())
  .addOption(
    new Option('--vm-type <type>', 'VM type (default: no private memory, GMEM_ONLY memslots the VMM maps; 6.18 on)')
      .choices(['snp', 'sw-protected', 'default'])
      .default('snp'),
  )
  .option(
    '--ops <mix>',
    'VMM operation weights: punch, fallocate, convert, prefault, populate (an SNP VM launching beside), memslot, memflags, plainslot, badbind, close, hwpoison, fwfail, oom, signal, mmap, touch, munmap (6.18 on, files the VMM may map), launch (the launching VM booted from several threads) ' +
      `(default ${STRESS_WORKLOAD_DEFAULTS.ops}; with --bug, the bug's own mix where it needs an op)`,
  )
  .option('--op-rate <n>', 'VMM operations per second (0: as fast as possible)', numArg('--op-rate', 0), 2000)
  .addOption(new Option('--pattern <pattern>', 'guest access pattern').choices([...PATTERNS]).default('random'))
  .option('--write-ratio <r>', 'share of guest accesses that write', numArg('--write-ratio', 0, 1), 0.3)
  .option('--audit-every <ms>', 'audit at a quiescent point this often (0: only at the end)', intArg('--audit-every', 0), 1000)
  .option('--seed <n>', 'seed (printed on every run, so any run can be replayed)', intArg('--seed', 0, 2 ** 32 - 1))
  .option('--json', 'print the report as JSON on stdout')
  .option('--trace <file.json>', 'write a Chrome trace (Perfetto, chrome://tracing) of faults, ioctls, lock waits, firmware commands')
  .option('--report <file.html>', 'write a self-contained HTML report with tables and charts')
  .addOption(new Option('--bug <name...>', 'enable planted bugs (the run should then fail)').choices([...BUG_NAMES]))
  .action(
    action('stress', async (it, o) => {
      // Each command loads its own machinery when it runs, so that --help, a bad option or another
      // command does not pay for it (a CLI start is most of a short run).
      const [{ runStress }, { writeReport }, { reportFromStress }, { formatStress }] = await Promise.all([
        import('../vmm/stress/stress.js'),
        import('../vmm/report/html.js'),
        import('../vmm/report/build.js'),
        import('./format.js'),
      ]);
      checkOutputs([out('--trace', o.trace), out('--report', o.report)]);
      const since = Date.now();
      const progress = new Progress(false);
      const report = await runStress({
        signal: it.signal,
        onSetupProgress: (f, what) => progress.update(f, what),
        vcpus: o.vcpus,
        vms: o.vms,
        memory: o.memory,
        ...(o.guestMemory ? { guestMemory: o.guestMemory } : {}),
        durationMs: Math.round(o.duration * 1000),
        ...(o.kernel ? { kernel: o.kernel } : {}),
        ...(o.policy ? { policy: o.policy } : {}),
        ...(o.patch ? { patches: o.patch } : {}),
        ...(o.moduleParam ? { moduleParams: parseModuleParamArgs(o.moduleParam as string[]) } : {}),
        vmType: o.vmType,
        ...(o.ops !== undefined ? { ops: o.ops } : {}),
        opRate: o.opRate,
        pattern: o.pattern,
        writeRatio: o.writeRatio,
        auditEveryMs: o.auditEvery,
        ...(o.seed !== undefined ? { seed: o.seed } : {}),
        ...(o.trace ? { trace: o.trace } : {}),
        ...(o.bug ? { bugs: o.bug } : {}),
        onProgress: (p) =>
          progress.update(
            p.elapsedMs / p.durationMs,
            `${(p.elapsedMs / 1000).toFixed(1)}s faults ${p.stats.faults} retries ${p.stats.faultRetries} punches ${p.stats.punchHoles} violations ${p.violations}`,
          ),
      });
      progress.done();
      if (o.report) writeReport(o.report, reportFromStress(report, commandLine()));
      process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatStress(report)}\n`);
      sayWritten('stress', since, [
        ['trace', o.trace],
        ['report', o.report],
      ]);
      return report.interrupted ? EXIT.INTERRUPTED : report.ok ? EXIT.PASS : EXIT.FAIL;
    }),
  );

program
  .command('run')
  .description("run a JSON scenario and print each step's outcome")
  .argument('<file>', 'scenario file')
  .option('--json', 'print {steps, audit, findings} as JSON on stdout')
  .option('--trace <file.json>', 'write a Chrome trace of the run')
  .option('--report <file.html>', 'write a self-contained HTML report')
  .addOption(
    new Option('--kernel <version>', 'run the scenario on this kernel version instead of its own `kernel` (or `policy`)').choices([
      ...KERNEL_CHOICES,
    ]),
  )
  .addOption(patchOption(", instead of the scenario's own `patches`"))
  .action(
    action('run', async (it, file: string, o) => {
      const [{ readScenarioFile }, { runScenario }, { writeReport }, { reportFromScenario }, { formatScenario }] = await Promise.all([
        import('./inputs.js'),
        import('../vmm/scenario/runner.js'),
        import('../vmm/report/html.js'),
        import('../vmm/report/build.js'),
        import('./format.js'),
      ]);
      const read = readScenarioFile(file);
      const kerneled = o.kernel ? { ...read, kernel: o.kernel, policy: undefined } : read;
      const scenario = o.patch ? { ...kerneled, patches: o.patch } : kerneled;
      checkOutputs([out('--trace', o.trace), out('--report', o.report)]);
      const since = Date.now();
      const progress = new Progress(false);
      const total = scenario.steps.length;
      const r = await runScenario(
        scenario,
        (s) => progress.update((Number.parseInt(s.index, 10) + 1) / total, `step ${s.index} of ${total}: ${s.op} -> ${s.result}`),
        {
          ...(o.trace ? { trace: o.trace } : {}),
          signal: it.signal,
          onSetupProgress: (f, what) => progress.update(f, what),
        },
      );
      progress.done();
      if (o.report) writeReport(o.report, reportFromScenario(r, file, commandLine()));
      if (o.json) {
        const steps = r.steps.map((s) => ({
          op: s.op,
          result: s.result,
          ...(s.value !== undefined ? { value: s.value } : {}),
          ...(s.exit ? { exit: s.exit } : {}),
          ...(s.detail ? { detail: s.detail } : {}),
          ...(s.mismatch ? { mismatch: s.mismatch } : {}),
        }));
        process.stdout.write(
          `${JSON.stringify({ steps, audit: r.audit, findings: r.findings, crashes: r.crashes, interrupted: r.interrupted, ok: r.ok }, null, 2)}\n`,
        );
      } else {
        process.stdout.write(`${formatScenario(r)}\n`);
      }
      sayWritten('run', since, [
        ['trace', o.trace],
        ['report', o.report],
      ]);
      return r.interrupted ? EXIT.INTERRUPTED : r.ok ? EXIT.PASS : EXIT.FAIL;
    }),
  );

program
  .command('explore')
  .description('run seeded controlled schedules until an invariant breaks; save, shrink and report the schedule')
  .option('--schedules <n>', 'schedules to try', intArg('--schedules', 1), 1000)
  .addOption(new Option('--strategy <s>', 'scheduling strategy').choices(['random', 'pct']).default('random'))
  .option('--depth <d>', 'PCT bug depth', intArg('--depth', 1, 17), 3)
  .addOption(
    new Option(
      '--points <mode>',
      `scheduling points: lock operations and named points only, or also every write to shared model state, with sleep sets (default ${DEFAULT_POINTS}; a planted bug's own when hunting one)`,
    ).choices([...POINTS_MODES]),
  )
  .option('--seed <n>', 'first seed', intArg('--seed', 0, 2 ** 32 - 1), 1)
  .addOption(
    new Option(
      '--kernel <version>',
      `modelled kernel version, upstream = ${UPSTREAM} (default 6.11; upstream when hunting a planted bug; a catalogued bug's buggy version with --catalogue)`,
    ).choices([...KERNEL_CHOICES]),
  )
  .addOption(new Option('--policy <policy>', 'prepare policy: an alias for the kernel version it was modelled on').choices([...POLICIES]))
  .addOption(patchOption('; with --catalogue, a patch that fixes the bug makes "not found" the expected result'))
  .addOption(moduleParamOption())
  .addOption(new Option('--bug <name>', 'planted bug to enable, or "all" to search for each in turn').choices([...BUG_NAMES, 'all']))
  .addOption(
    new Option(
      '--catalogue <id>',
      'a historical bug (see `gmem-sandbox catalogue`): its workload; exit 0 when it is found on a version that has it, or not found on one with the fix',
    ).choices(CATALOGUE.map((b) => b.id)),
  )
  .option(
    '--shard <K/N>',
    'run only the schedules i with i % N == K (0-based), as one of N machines; `merge` combines the --json results',
    shardArg,
  )
  .option('--ops <mix>', `VMM operation weights (default: every op: ${DEFAULT_WORKLOAD.ops})`, mixArg)
  .option(
    '--vmm-threads <n>',
    `VMM threads that split the ops (default ${DEFAULT_WORKLOAD.vmmThreads})`,
    intArg('--vmm-threads', 1, MAX_VMM_THREADS),
  )
  .option(
    '--multi-vm-share <x>',
    `share of schedules run as two linked VMs or beside a launching VM (default ${DEFAULT_WORKLOAD.multiVmShare})`,
    numArg('--multi-vm-share', 0, 1),
  )
  .option(
    '--gmem-only-share <x>',
    `share of schedules run on a default VM with GMEM_ONLY memslots the VMM maps, on 6.18 on (default ${DEFAULT_WORKLOAD.gmemOnlyShare})`,
    numArg('--gmem-only-share', 0, 1),
  )
  .option(
    '--jobs <n>',
    `explorers searching at once, each on its own sandbox and threads (default 1); the result is the one --jobs 1 gives`,
    intArg('--jobs', 1, MAX_EXPLORE_JOBS),
  )
  .option('--out <dir>', 'where failing schedules are saved (created if missing)', 'schedules')
  .option('--no-shrink', 'do not shrink a failing schedule')
  .option('--stop-on-known', 'stop at a known bug of the kernel run too (by default it is counted, set aside, and the search goes on)')
  .option('--trace <file.json>', 'write a Chrome trace of the failing (shrunk) schedule')
  .option(
    '--coverage',
    'report how many schedules reached each named point, pair of VMM ops in flight at once and rare kernel event, and what none reached',
  )
  .option('--json', 'print results as JSON')
  // A scenario file switches to model checking its parallel groups (src/cli/model-check.ts).
  .argument('[file]', 'scenario file: model check the interleavings of its parallel groups')
  .addOption(
    new Option('--mode <m>', 'with a scenario file: every schedule within the preemption bound, or random walks')
      .choices(['exhaustive', 'random'])
      .default('exhaustive'),
  )
  .option('--preemptions <k>', 'with a scenario file: the preemption bound of the exhaustive mode', intArg('--preemptions', 0, 64), 2)
  .option(
    '--max-schedules <n>',
    'with a scenario file: stop the exhaustive mode after this many schedules (it then says it is not complete)',
    intArg('--max-schedules', 1),
    10_000,
  )
  .action(
    action('explore', async (it, file: string | undefined, o) =>
      file !== undefined
        ? (await import('./model-check.js')).modelCheckCommand(file, o)
        : (await import('./explore.js')).exploreCommand(
            o.moduleParam ? { ...o, moduleParams: parseModuleParamArgs(o.moduleParam as string[]) } : o,
            it.signal,
          ),
    ),
  );

program
  .command('replay')
  .description('rerun a saved schedule exactly; optionally write a Chrome trace of every step and lock wait')
  .argument('<file>', 'schedule file written by explore')
  .option('--trace <out.json>', 'write Chrome trace event JSON (Perfetto, chrome://tracing)')
  .option('--json', 'print the result as JSON')
  .action(
    action('replay', async (it, file: string, o) => {
      const [{ replayIfScenario }, { replayCommand }] = await Promise.all([import('./model-check.js'), import('./explore.js')]);
      return (await replayIfScenario(file, o)) ?? (await replayCommand(file, o, it.signal));
    }),
  );

program
  .command('catalogue')
  .description(
    'the historical bugs the sandbox reproduces by running the kernel version that had them, the accepted races (findings), the behaviour changes between versions, and the posted patches (--patch)',
  )
  .option('--json', 'print the catalogue as JSON')
  .action(
    action('catalogue', async (_it, o) => {
      (await import('./catalogue.js')).printCatalogue(o.json === true);
      return EXIT.PASS;
    }),
  );

const experiment = registerExperiments(program);
registerSweep(program);

for (const c of [...program.commands, ...experiment.commands]) c.addHelpText('after', EXIT_HELP);
program.addHelpText('after', EXIT_HELP);

// A reader that stops early (`gmem-sandbox catalogue | head`) closes the pipe: end quietly, as
// the shell's tools do, instead of with an unhandled EPIPE.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? EXIT.PASS);
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof CommanderError) {
    process.exitCode = commanderExit(e);
    return;
  }
  process.stderr.write(`gmem-sandbox: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = EXIT.USAGE;
});
