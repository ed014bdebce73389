// `npm run bench`: measures every item with its baseline in this one process and prints a table
// of medians, p50/p99 and ratios (item / baseline).
//
//   node dist/bench/run.js [--quick] [--json] [--only GROUP[,GROUP...]]
//
// Groups: micro, roundtrip, zerofill, fault, prefault, throughput, policy, explore. The machine's
// ceiling rows (two threads' scaling) are always measured first, and a run where two threads
// scale below QUIET_SCALING is flagged noisy. --quick is a smoke run of a few
// seconds (tiny time budgets and sizes: its figures are not meant to be quoted) that checks its
// own rows (check.ts) and exits 1 when one is missing or not a finite figure: CI runs it.

import os from 'node:os';
import { Progress } from '../src/cli/progress.js';
import { quickRowProblems } from './check.js';
import { runColdFault, runPrefault } from './fault.js';
import { runConvert } from './convert.js';
import type { Ctx } from './measure.js';
import { runMicro } from './micro.js';
import { runRoundtrip } from './roundtrip.js';
import { type Row, renderTable, resolveRows } from './table.js';
import { runCeiling, runPolicies, runThroughput } from './throughput.js';
import { runExplore } from './explore.js';
import { runZeroFill } from './zerofill.js';

const GROUPS: Record<string, (ctx: Ctx) => Promise<Row[]>> = {
  micro: runMicro,
  roundtrip: runRoundtrip,
  zerofill: runZeroFill,
  // The conversion rows after the cold faults, in the same run: their baselines include fault.cold.snp.7.0.
  fault: async (ctx) => [...(await runColdFault(ctx)), ...(await runConvert(ctx))],
  prefault: runPrefault,
  throughput: runThroughput,
  policy: runPolicies,
  explore: runExplore,
};

/** Two threads scaling less than this (ceiling rows) make the run noisy: not for quoting. */
export const QUIET_SCALING = 1.8;

interface Args {
  json: boolean;
  quick: boolean;
  only: string[];
}

function parseArgs(argv: string[]): Args {
  const a: Args = { json: false, quick: false, only: [] };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s === '--json') a.json = true;
    else if (s === '--quick') a.quick = true;
    else if (s === '--only' || s.startsWith('--only=')) {
      const v = s === '--only' ? argv[++i] : s.slice('--only='.length);
      if (v === undefined) throw new Error('--only needs a group name');
      a.only.push(
        ...v
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      );
    } else if (s === '--help' || s === '-h') {
      process.stdout.write(`usage: node dist/bench/run.js [--quick] [--json] [--only ${Object.keys(GROUPS).join('|')}[,...]]\n`);
      process.exit(0);
    } else throw new Error(`unknown argument '${s}'`);
  }
  for (const g of a.only) if (!(g in GROUPS)) throw new Error(`--only: unknown group '${g}'; known: ${Object.keys(GROUPS).join(', ')}`);
  return a;
}

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const names = args.only.length > 0 ? args.only : Object.keys(GROUPS);
  // Progress on stderr, in place on a terminal (a line every few seconds otherwise), as the CLI shows it.
  const progress = new Progress();
  let group = 0;
  const ctx: Ctx = { quick: args.quick, log: (m) => progress.update(group / names.length, `[bench ${group + 1}/${names.length}] ${m}`) };
  const t0 = performance.now();
  // The machine's state first: every ratio below depends on it, and a noisy run must say so.
  const rows: Row[] = await runCeiling(ctx);
  const scale = (kind: string): number => {
    const one = rows.find((r) => r.name === `ceiling.${kind}.1thread`)?.median ?? NaN;
    const two = rows.find((r) => r.name === `ceiling.${kind}.2threads`)?.median ?? NaN;
    return two / one;
  };
  const scaling = { chain: scale('chain'), fill: scale('fill') };
  ctx.fillScaling = scaling.fill;
  const noisy = !(Math.min(scaling.chain, scaling.fill) >= QUIET_SCALING);
  const verdict = `two threads scale ${scaling.chain.toFixed(2)}x (chain) and ${scaling.fill.toFixed(2)}x (fill): ${
    noisy ? `NOISY RUN (below ${QUIET_SCALING}x), not for quoting` : 'a quiet run'
  }`;
  ctx.log(`machine: ${verdict}`);
  for (const [i, g] of names.entries()) {
    group = i;
    const tg = performance.now();
    rows.push(...(await GROUPS[g](ctx)));
    ctx.log(`${g}: ${((performance.now() - tg) / 1000).toFixed(1)} s`);
  }
  progress.done();
  resolveRows(rows);
  const elapsedS = (performance.now() - t0) / 1000;
  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify({ quick: args.quick, groups: names, elapsedS, machine: { ...machine, scaling, noisy }, rows }, null, 2)}\n`,
    );
  } else {
    process.stdout.write(
      `gmem-sandbox bench${args.quick ? ' (--quick: smoke run, not for quoting)' : ''}: ${machine.cpus} x ${machine.cpuModel}, node ${machine.node}\n\n`,
    );
    process.stdout.write(`machine: ${verdict}\n\n`);
    process.stdout.write(`${renderTable(rows)}\n\n`);
    const missed = rows.filter((r) => r.status === 'MISS').map((r) => r.name);
    process.stdout.write(
      `${rows.filter((r) => r.status === 'PASS').length} targets met, ${missed.length} missed${missed.length ? ` (${missed.join(', ')})` : ''}; ${elapsedS.toFixed(1)} s${noisy ? '; NOISY RUN' : ''}\n`,
    );
  }
  if (!args.quick) return 0;
  const problems = quickRowProblems(rows, names);
  if (problems.length === 0) return 0;
  process.stderr.write(`bench --quick: ${problems.length} problem(s) with the rows:\n${problems.map((p) => `  ${p}\n`).join('')}`);
  return 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
