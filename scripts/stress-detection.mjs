#!/usr/bin/env node
// How often a free-running stress campaign finds each planted bug: runs `stress --bug B` N times
// per bug (seeds 1..N, the default duration unless --duration), and prints found/N per bug with
// the invariants that caught it. A tool for the project (the README quotes its figures), not a
// test: it takes minutes. Usage: node scripts/stress-detection.mjs [--runs N] [--duration S] [--bug B]
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { BUG_NAMES } = await import(join(root, 'dist/src/index.js'));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const runs = Number(arg('--runs', '5'));
const duration = arg('--duration', '5');
const only = arg('--bug', null);
const rows = [];
for (const bug of only ? [only] : BUG_NAMES) {
  let found = 0;
  const caught = new Map();
  for (let seed = 1; seed <= runs; seed++) {
    let out;
    try {
      out = execFileSync(
        process.execPath,
        [join(root, 'bin/gmem-sandbox.js'), 'stress', '--bug', bug, '--seed', String(seed), '--duration', duration, '--json'],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
          maxBuffer: 64 << 20,
        },
      );
    } catch (e) {
      // Exit status 1 is a failed run, which is the point: its report is on stdout all the same.
      out = e.stdout;
    }
    const r = JSON.parse(out);
    if (!r.ok) found++;
    for (const [inv, n] of Object.entries(r.violations ?? {})) if (n > 0) caught.set(inv, (caught.get(inv) ?? 0) + 1);
  }
  const how = [...caught].map(([inv, n]) => `${inv} ${n}`).join(', ') || '-';
  rows.push({ bug, found, runs, how });
  process.stdout.write(`${bug.padEnd(40)} ${found}/${runs}   ${how}\n`);
}
