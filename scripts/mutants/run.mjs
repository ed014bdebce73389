#!/usr/bin/env node
// The mutation harness: how many realistic mistakes in the kernel model the explorer finds. Each
// mutant of catalogue.mjs is applied to a scratch copy of the built tree (never to the checkout),
// its one mutated file transpiled into the copy's dist/, and `explore` run on upstream with the
// default workload, N schedules per strategy; optionally `stress` for a few seconds too. Reports
// per mutant: found or missed, the schedules it took, what was reported; then found X of Y and
// the median schedules to find. A tool for the project (docs/explorer.md quotes its figures), not
// a test: it takes minutes. Interrupting it (Ctrl-C) stops the runs and removes the scratch copies.
//
// Usage: node scripts/mutants/run.mjs [--schedules N] [--strategies random,pct] [--points locks|shared]
//          [--jobs J] [--only id,id] [--stress SECONDS] [--timeout SECONDS] [--json FILE] [--check] [--keep]
// Build first (npm run build): the copies start from dist/, which must be built from src/.

import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { MUTANTS } from './catalogue.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function parseArgs(argv) {
  const o = {
    schedules: 500,
    strategies: ['random', 'pct'],
    points: 'locks',
    jobs: 1,
    only: null,
    stress: 0,
    timeout: 0,
    json: null,
    check: false,
    keep: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a}: needs a value`);
      return argv[++i];
    };
    const int = (min) => {
      const n = Number(val());
      if (!Number.isInteger(n) || n < min) throw new Error(`${a}: an integer of at least ${min}`);
      return n;
    };
    if (a === '--schedules') o.schedules = int(1);
    else if (a === '--strategies') o.strategies = val().split(',');
    else if (a === '--points') o.points = val();
    else if (a === '--jobs') o.jobs = int(1);
    else if (a === '--only') o.only = val().split(',');
    else if (a === '--stress') o.stress = int(0);
    else if (a === '--timeout') o.timeout = int(1);
    else if (a === '--json') o.json = val();
    else if (a === '--check') o.check = true;
    else if (a === '--keep') o.keep = true;
    else throw new Error(`unknown option ${a} (see the header of scripts/mutants/run.mjs)`);
  }
  for (const s of o.strategies) if (s !== 'random' && s !== 'pct') throw new Error(`--strategies: random or pct, not ${s}`);
  if (o.points !== 'locks' && o.points !== 'shared') throw new Error(`--points: locks or shared, not ${o.points}`);
  return o;
}

/** The mutated text of the mutant's file, or an error saying why the patch does not apply. */
function mutate(m) {
  let text = readFileSync(join(root, m.file), 'utf8');
  for (const p of [{ find: m.find, replace: m.replace }, ...(m.also ?? [])]) {
    const n = text.split(p.find).length - 1;
    if (n !== 1) return { error: `${m.file}: the text to replace occurs ${n} times, not once` };
    text = text.replace(p.find, () => p.replace);
  }
  return { text };
}

/** TypeScript to the ES module the build would emit for it (no type check: a mutant is a small edit). */
function transpile(m, text) {
  const r = ts.transpileModule(text, {
    fileName: m.file,
    reportDiagnostics: true,
    // ES modules, as package.json's "type": "module" makes the build's NodeNext emit them.
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022 },
  });
  const errs = (r.diagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  return errs.length > 0 ? { error: `does not compile: ${errs.join('; ')}` } : { js: r.outputText };
}

const distOf = (file) => join('dist', file.replace(/\.ts$/, '.js'));

/** A copy of the built tree to mutate: dist/, bin/, package.json, and node_modules linked. */
function scratchCopy(base) {
  const dir = mkdtempSync(join(base, 'slot-'));
  cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true });
  cpSync(join(root, 'bin'), join(dir, 'bin'), { recursive: true });
  cpSync(join(root, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  mkdirSync(join(dir, 'out'));
  return dir;
}

const children = new Set();

/** Runs the CLI of a copy; resolves with its stdout (whatever its exit status) or a timeout. */
function cli(dir, args, timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(dir, 'bin', 'gmem-sandbox.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => kill(child), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, out, err, timedOut: signal !== null });
    });
  });
}

function kill(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** One explore search of a mutant: found (schedules, invariant), missed, or what broke instead. */
async function explore(dir, o, strategy) {
  const args = ['explore', '--kernel', 'upstream', '--schedules', String(o.schedules), '--strategy', strategy, '--points', o.points];
  args.push('--no-shrink', '--json', '--out', join(dir, 'out'));
  const timeoutMs = (o.timeout || 60 + o.schedules) * 1000;
  const t0 = performance.now();
  const r = await cli(dir, args, timeoutMs);
  const secs = (performance.now() - t0) / 1000;
  if (r.timedOut) return { result: 'hang', detail: `no answer in ${timeoutMs / 1000} s`, secs };
  let j;
  try {
    j = JSON.parse(r.out).results[0];
  } catch {
    // A mutant that throws (a refcount underflow, an assertion) crashes the search: the kernel would BUG.
    const lines = r.err.split('\n');
    const line = lines.find((l) => /\w+Error: /.test(l)) ?? lines.find((l) => /error|fail/i.test(l)) ?? lines[0] ?? '';
    // A module that does not load is the harness's failure, not the mutant's finding.
    if (/SyntaxError|ERR_MODULE_NOT_FOUND/.test(r.err)) throw new Error(`the mutated tree does not load: ${line}`);
    return { result: 'crash', detail: line.slice(0, 160), secs };
  }
  const known = j.known.map((k) => `${k.id} x${k.schedules}`).join(', ');
  if (!j.found) return { result: 'missed', schedules: j.schedules, ...(known ? { known } : {}), secs };
  const invariant = (j.violation ?? '').split(':')[0];
  return {
    result: 'found',
    schedules: j.schedules,
    seed: j.seed,
    invariant,
    detail: (j.violation ?? '').slice(0, 160),
    ...(known ? { known } : {}),
    secs,
  };
}

async function stress(dir, o) {
  const r = await cli(
    dir,
    ['stress', '--kernel', 'upstream', '--duration', String(o.stress), '--seed', '1', '--json'],
    (o.stress + 60) * 1000,
  );
  if (r.timedOut) return { result: 'hang' };
  try {
    const j = JSON.parse(r.out);
    const caught = Object.entries(j.violations ?? {})
      .filter(([, n]) => n > 0)
      .map(([inv]) => inv);
    return j.ok ? { result: 'missed' } : { result: 'found', invariant: caught.join(',') || 'failed' };
  } catch {
    return { result: 'crash', detail: r.err.split('\n')[0]?.slice(0, 160) ?? '' };
  }
}

/** Applies a mutant to a copy, runs it, and puts the copy's file back. */
async function runMutant(dir, m, o) {
  const row = { id: m.id, kind: m.kind, file: m.file, what: m.what, runs: {} };
  const mt = mutate(m);
  const js = mt.error ? mt : transpile(m, mt.text);
  if (js.error) return { ...row, error: js.error };
  const target = join(dir, distOf(m.file));
  const pristine = readFileSync(target, 'utf8');
  writeFileSync(target, js.js);
  try {
    for (const s of o.strategies) row.runs[s] = await explore(dir, o, s);
    if (o.stress > 0) row.stress = await stress(dir, o);
  } finally {
    writeFileSync(target, pristine);
  }
  return row;
}

function median(xs) {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const k = Math.floor(s.length / 2);
  return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2;
}

function caught(run) {
  return run !== undefined && run.result !== 'missed';
}

function describeRun(r) {
  if (r === undefined) return '-';
  if (r.result === 'found') return `found @${r.schedules} ${r.invariant}`;
  if (r.result === 'missed') return `missed (${r.schedules})${r.known ? ` known: ${r.known}` : ''}`;
  // A crash: the error the kernel model threw (a lockdep assertion, a refcount underflow, ...).
  const thrown = /(\w*Error): (.*)/.exec(r.detail ?? '');
  return `${r.result}: ${thrown ? `${thrown[1]}: ${thrown[2]}` : (r.detail ?? '')}`.slice(0, 90);
}

function summary(rows, o) {
  const ok = rows.filter((r) => !r.error);
  const lines = [];
  const any = ok.filter((r) => o.strategies.some((s) => caught(r.runs[s])));
  lines.push(`found ${any.length} of ${ok.length} mutants by explore (points ${o.points}, ${o.schedules} schedules per strategy)`);
  for (const s of o.strategies) {
    const f = ok.filter((r) => caught(r.runs[s]));
    const sch = f.filter((r) => r.runs[s].result === 'found').map((r) => r.runs[s].schedules);
    lines.push(
      `  ${s}: ${f.length} of ${ok.length} (${f.length - sch.length} as a crash or hang), median schedules to find ${median(sch) ?? '-'}`,
    );
  }
  if (o.stress > 0) lines.push(`  stress ${o.stress} s: ${ok.filter((r) => caught(r.stress)).length} of ${ok.length}`);
  const bad = rows.filter((r) => r.error);
  if (bad.length > 0) lines.push(`  not run (patch does not apply): ${bad.map((r) => r.id).join(', ')}`);
  return lines.join('\n');
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const chosen = o.only ? MUTANTS.filter((m) => o.only.includes(m.id)) : MUTANTS;
  if (o.only) for (const id of o.only) if (!MUTANTS.some((m) => m.id === id)) throw new Error(`--only: no mutant '${id}'`);
  const ids = new Set();
  for (const m of MUTANTS) {
    if (ids.has(m.id)) throw new Error(`catalogue: mutant ${m.id} twice`);
    ids.add(m.id);
  }
  if (o.check) {
    let bad = 0;
    for (const m of chosen) {
      const mt = mutate(m);
      const r = mt.error ? mt : transpile(m, mt.text);
      if (r.error) bad++;
      process.stdout.write(`${r.error ? 'NO  ' : 'ok  '}${m.id}${r.error ? `: ${r.error}` : ''}\n`);
    }
    process.stdout.write(`${chosen.length - bad} of ${chosen.length} mutants apply\n`);
    return bad === 0 ? 0 : 1;
  }
  for (const m of chosen) {
    const built = join(root, distOf(m.file));
    if (!existsSync(built) || statSync(built).mtimeMs < statSync(join(root, m.file)).mtimeMs)
      throw new Error(`${built} is missing or older than ${m.file}: run npm run build first`);
  }
  const base = mkdtempSync(join(tmpdir(), 'gmem-mutants-'));
  const cleanup = () => {
    for (const c of children) kill(c);
    if (!o.keep) rmSync(base, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      process.stderr.write(`\ninterrupted: scratch copies removed, the checkout was never changed\n`);
      cleanup();
      process.exit(130);
    });
  }
  process.stderr.write(`${chosen.length} mutants, ${o.jobs} at a time, scratch in ${base}\n`);
  // The unmutated copy first: it must load, and its search must come back clean.
  const sanity = await explore(scratchCopy(base), { ...o, schedules: 32 }, o.strategies[0]);
  if (sanity.result !== 'missed') {
    cleanup();
    throw new Error(`the unmutated tree is not clean: ${describeRun(sanity)}`);
  }
  const rows = new Array(chosen.length);
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: Math.min(o.jobs, chosen.length) }, async () => {
        const dir = scratchCopy(base);
        while (next < chosen.length) {
          const k = next++;
          const row = await runMutant(dir, chosen[k], o);
          rows[k] = row;
          const cols = row.error ? `NOT RUN: ${row.error}` : o.strategies.map((s) => `${s}: ${describeRun(row.runs[s])}`).join(' | ');
          const st = row.stress ? ` | stress: ${row.stress.result}${row.stress.invariant ? ` ${row.stress.invariant}` : ''}` : '';
          process.stdout.write(`${row.id.padEnd(36)} ${cols}${st}\n`);
        }
      }),
    );
  } finally {
    cleanup();
  }
  const text = summary(rows, o);
  process.stdout.write(`${text}\n`);
  if (o.json) writeFileSync(o.json, `${JSON.stringify({ options: o, rows, summary: text }, null, 2)}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`mutants: ${e.message}\n`);
    process.exit(2);
  },
);
