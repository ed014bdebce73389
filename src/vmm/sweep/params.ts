// The parameters a sweep varies: their names, aliases, ranges and how each is written on the
// `stress` command line; seeds; and the error every bad value gives (exit status 2).

import { POLICIES } from '../../gmem/policy.js';
import { KERNEL_CHOICES, KERNEL_VERSIONS } from '../../gmem/version.js';
import { PATTERNS } from '../../vcpu-workers/guest-workload.js';
import { parseSize } from '../sandbox/units.js';
import { parseMix } from '../workload/mix.js';
import { SweepError } from '../io/problems.js';

/** A single quote inside a single-quoted shell word: end the word, an escaped quote, reopen. */
const SHELL_QUOTE = "'\\''";

/** What every sweep job runs with unless a parameter says otherwise (shorter than `stress`). */
export const SWEEP_DEFAULTS = { durationMs: 1000, auditEveryMs: 500 } as const;

/** The StressOptions fields a sweep can vary, in the order they nest in the job list. */
export const PARAM_ORDER = [
  'kernel',
  'policy',
  'vmType',
  'vms',
  'vcpus',
  'memory',
  'guestMemory',
  'durationMs',
  'ops',
  'opRate',
  'pattern',
  'writeRatio',
  'auditEveryMs',
] as const;
export type SweepParamName = (typeof PARAM_ORDER)[number];
export type ParamValue = string | number;
export type SweepParams = Partial<Record<SweepParamName, ParamValue>>;

const VM_TYPES = ['snp', 'sw-protected'] as const;
const MAX_SEED = 2 ** 32 - 1;
/** Largest plan (jobs) a sweep accepts; a campaign beyond that wants several sweeps. */
export const MAX_JOBS = 1_000_000;

interface ParamSpec {
  name: SweepParamName;
  /** Names accepted on the command line (matched ignoring case, '-' and '_'). */
  aliases: string[];
  /** Separator between alternatives (';' for ops, whose values contain commas). */
  sep: string;
  /** What 'all' expands to, if anything. */
  all?: readonly string[];
  parse(v: string): ParamValue;
  /** The matching `gmem-sandbox stress` flag and how the value is written there. */
  flag: string;
  cli?: (v: ParamValue) => string;
}

function int(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
      throw new Error(`must be an integer from ${min} to ${max}`);
    return n;
  };
}
function num(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new Error(`must be a number from ${min} to ${max}`);
    return n;
  };
}
function oneOf(values: readonly string[]) {
  return (v: string): string => {
    if (!values.includes(v)) throw new Error(`must be one of ${values.join(', ')} or all`);
    return v;
  };
}
function size(what: string, pageMultiple: boolean) {
  return (v: string): ParamValue => {
    let n: number;
    try {
      n = parseSize(v, what);
    } catch {
      n = -1;
    }
    if (n <= 0) throw new Error('must be a positive size like 16MiB, 4096 or 0x1000');
    if (pageMultiple && n % 4096 !== 0) throw new Error('must be a multiple of 4KiB');
    return /^\d+$/.test(v.trim()) ? n : v.trim();
  };
}

const SPECS: ParamSpec[] = [
  { name: 'kernel', aliases: ['kernel'], sep: ',', all: KERNEL_VERSIONS, parse: oneOf(KERNEL_CHOICES), flag: '--kernel' },
  { name: 'policy', aliases: ['policy'], sep: ',', all: POLICIES, parse: oneOf(POLICIES), flag: '--policy' },
  { name: 'vmType', aliases: ['vmType', 'vm-type'], sep: ',', all: VM_TYPES, parse: oneOf(VM_TYPES), flag: '--vm-type' },
  { name: 'vms', aliases: ['vms'], sep: ',', parse: int(1, 8), flag: '--vms' },
  { name: 'vcpus', aliases: ['vcpus'], sep: ',', parse: int(1, 31), flag: '--vcpus' },
  { name: 'memory', aliases: ['memory'], sep: ',', parse: size('memory', false), flag: '--memory' },
  { name: 'guestMemory', aliases: ['guestMemory', 'guest-memory'], sep: ',', parse: size('guest-memory', true), flag: '--guest-memory' },
  {
    name: 'durationMs',
    aliases: ['durationMs', 'duration-ms'],
    sep: ',',
    parse: int(100, 3_600_000),
    flag: '--duration',
    cli: (v) => String(Number(v) / 1000),
  },
  {
    name: 'ops',
    aliases: ['ops'],
    sep: ';',
    parse: (v) => {
      try {
        if (v.trim() === '') throw new Error('empty');
        parseMix(v);
      } catch (e) {
        throw new Error(`must be an operation mix like punch=3,convert=1 (${(e as Error).message.replace(/^--ops: /, '')})`);
      }
      return v.trim();
    },
    flag: '--ops',
  },
  { name: 'opRate', aliases: ['opRate', 'op-rate'], sep: ',', parse: num(0, 1e9), flag: '--op-rate' },
  { name: 'pattern', aliases: ['pattern'], sep: ',', all: PATTERNS, parse: oneOf(PATTERNS), flag: '--pattern' },
  { name: 'writeRatio', aliases: ['writeRatio', 'write-ratio'], sep: ',', parse: num(0, 1), flag: '--write-ratio' },
  {
    name: 'auditEveryMs',
    aliases: ['auditEveryMs', 'audit-every-ms', 'audit-every'],
    sep: ',',
    parse: int(0, 3_600_000),
    flag: '--audit-every',
  },
];
/** `duration` (seconds) is an alias of durationMs with its own unit. */
const DURATION_SECONDS: ParamSpec = {
  name: 'durationMs',
  aliases: ['duration'],
  sep: ',',
  parse: (v) => Math.round(num(0.1, 3600)(v) * 1000),
  flag: '--duration',
};

const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
const BY_ALIAS = new Map<string, ParamSpec>();
for (const s of [...SPECS, DURATION_SECONDS]) for (const a of s.aliases) BY_ALIAS.set(norm(a), s);

export const PARAM_HELP =
  'vcpus, vms, kernel, policy, vm-type, memory, guest-memory, duration (seconds), duration-ms, ops (alternatives separated by ;), op-rate, pattern, write-ratio, audit-every-ms';

export interface ParsedParam {
  name: SweepParamName;
  values: ParamValue[];
}

/** Parses one `--param name=v1,v2` ('all' expands policy, vm-type and pattern). */
export function parseParam(raw: string): ParsedParam {
  const eq = raw.indexOf('=');
  if (eq <= 0) throw new SweepError(`--param ${raw}: expected name=value[,value...]`);
  const given = raw.slice(0, eq).trim();
  const spec = BY_ALIAS.get(norm(given));
  if (spec === undefined) {
    const hint = norm(given) === 'seed' || norm(given) === 'seeds' ? ' (use --seeds)' : '';
    throw new SweepError(`--param ${raw}: unknown parameter '${given}'${hint}; known: ${PARAM_HELP}`);
  }
  const parts = raw
    .slice(eq + 1)
    .split(spec.sep)
    .map((p) => p.trim());
  const values: ParamValue[] = [];
  for (const p of parts) {
    if (p === '') throw new SweepError(`--param ${raw}: ${given} has an empty value (values are separated by '${spec.sep}')`);
    if (p === 'all') {
      if (spec.all === undefined) throw new SweepError(`--param ${raw}: 'all' is only accepted for kernel, policy, vm-type and pattern`);
      values.push(...spec.all);
      continue;
    }
    let v: ParamValue;
    try {
      v = spec.parse(p);
    } catch (e) {
      throw new SweepError(`--param ${raw}: ${given} ${(e as Error).message}, got '${p}'`);
    }
    values.push(v);
  }
  const seen = new Set<string>();
  for (const v of values) {
    if (seen.has(String(v))) throw new SweepError(`--param ${raw}: ${given} value '${v}' is listed twice`);
    seen.add(String(v));
  }
  return { name: spec.name, values };
}

/** Parses `--seeds`: `A..B` (inclusive), a comma list, or a mix (`0..9,100`). */
export function parseSeeds(raw: string | number[]): number[] {
  const seeds: number[] = [];
  const bad = (what: string) => new SweepError(`--seeds ${raw}: ${what}`);
  const check = (s: string): number => {
    if (!/^\d+$/.test(s) || Number(s) > MAX_SEED) throw bad(`'${s}' is not a seed (an integer from 0 to ${MAX_SEED}) or a range A..B`);
    return Number(s);
  };
  if (Array.isArray(raw)) {
    for (const s of raw) seeds.push(check(String(s)));
  } else {
    const items = raw.split(',').map((s) => s.trim());
    for (const item of items) {
      if (item === '') throw bad('empty item');
      const m = /^(.*?)\.\.(.*)$/.exec(item);
      if (m === null) {
        seeds.push(check(item));
        continue;
      }
      const a = check(m[1].trim());
      const b = check(m[2].trim());
      if (b < a) throw bad(`range end ${b} is below its start ${a}`);
      if (b - a + 1 > MAX_JOBS) throw bad(`range ${item} has more than ${MAX_JOBS} seeds`);
      for (let s = a; s <= b; s++) seeds.push(s);
    }
  }
  if (seeds.length === 0) throw bad('no seeds');
  const seen = new Set<number>();
  for (const s of seeds) {
    if (seen.has(s)) throw bad(`seed ${s} is listed twice`);
    seen.add(s);
  }
  return seeds;
}

export function formatParams(p: SweepParams): string {
  return PARAM_ORDER.filter((n) => p[n] !== undefined)
    .map((n) => `${n}=${p[n]}`)
    .join(' ');
}

/** The `gmem-sandbox stress` command that reruns one job on its own. */
export function rerunCommand(params: SweepParams, seed: number): string {
  const o = { ...SWEEP_DEFAULTS, ...params } as SweepParams;
  const q = (s: string) => (/^[\w.,=:/+-]+$/.test(s) ? s : `'${s.replaceAll("'", SHELL_QUOTE)}'`);
  const parts = ['gmem-sandbox', 'stress', '--seed', String(seed)];
  for (const n of PARAM_ORDER) {
    const v = o[n];
    if (v === undefined) continue;
    const spec = SPECS.find((s) => s.name === n) as ParamSpec;
    parts.push(spec.flag, q(spec.cli ? spec.cli(v) : String(v)));
  }
  return parts.join(' ');
}
