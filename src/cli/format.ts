// Human-readable reports for the terminal.

import type { MultiVmResult, PolicyRow } from '../vmm/experiments/experiments.js';
import type { ConversionRow } from '../vmm/experiments/conversion.js';
import { CONVERSION_COLUMNS, conversionCells } from '../vmm/report/conversion.js';
import type { ScenarioReport } from '../vmm/scenario/runner.js';
import type { StressReport } from '../vmm/stress/stress.js';

function rows(pairs: Array<[string, string | number]>, indent = '  '): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${indent}${k.padEnd(w)}  ${typeof v === 'number' ? v.toLocaleString('en-US') : v}`).join('\n');
}

/** 16777216 -> "16MiB"; strings are shown as given. */
function bytes(v: number | string): string {
  if (typeof v === 'string') return v;
  for (const [u, n] of [
    ['GiB', 1 << 30],
    ['MiB', 1 << 20],
    ['KiB', 1 << 10],
  ] as const)
    if (v >= n && v % n === 0) return `${v / n}${u}`;
  return `${v} B`;
}

/** The stress command line that repeats a run's workload. */
export function stressCommand(r: StressReport): string {
  const c = r.config;
  const parts = [
    'gmem-sandbox stress',
    `--seed ${r.seed}`,
    // The kernel, not its policy alias: 6.18 and upstream share 6.11's prepare policy.
    `--kernel ${c.kernel}`,
    ...c.patches.map((p) => `--patch ${p}`),
    ...Object.entries(c.moduleParams)
      .filter(([, v]) => v)
      .map(([n]) => `--module-param ${n}=1`),
    `--vm-type ${c.vmType}`,
    `--vms ${c.vms}`,
    `--vcpus ${c.vcpus}`,
    `--memory ${bytes(c.memory)}`,
    `--guest-memory ${bytes(c.guestMemory)}`,
    `--duration ${c.durationMs / 1000}`,
    `--ops '${c.ops}'`,
    `--op-rate ${c.opRate}`,
    `--pattern ${c.pattern}`,
    `--write-ratio ${c.writeRatio}`,
    ...c.bugs.map((b) => `--bug ${b}`),
  ];
  return parts.join(' ');
}

export function formatStress(r: StressReport): string {
  const c = r.config;
  const out: string[] = [];
  out.push(
    `gmem-sandbox stress: ${r.interrupted ? `INTERRUPTED after ${(r.elapsedMs / 1000).toFixed(1)} s (partial result)` : r.ok ? 'PASS' : 'FAIL'}  (seed ${r.seed})`,
  );
  out.push(`  same workload again: ${stressCommand(r)}`);
  out.push('  (threads run freely, so a rerun repeats the workload, not the interleaving: `explore` replays exactly)');
  out.push(
    `  kernel ${c.kernel}${c.patches.map((p) => ` + ${p}`).join('')}${Object.entries(c.moduleParams)
      .filter(([, v]) => v)
      .map(([n]) => ` ${n}=1`)
      .join(
        '',
      )} (policy ${c.policy}), ${c.vmType} x${c.vms}, ${c.vcpus} vCPU(s) per VM, memory ${bytes(c.memory)}, guest memory ${bytes(c.guestMemory)}, ${(c.durationMs / 1000).toFixed(1)} s, ops ${c.ops} at ${c.opRate}/s`,
  );
  out.push('', 'kernel paths');
  out.push(rows(Object.entries(r.counters)));
  out.push(
    rows([
      ['faults/s', Math.round(r.faultsPerSecond)],
      ['guest accesses', r.guestAccesses],
    ]),
  );
  out.push('', 'VMM operations (a conversion to shared also punches its range, as QEMU discards it)');
  out.push(rows(Object.entries(r.vmmOps)));
  if (Object.keys(r.vmmErrors).length) out.push(rows(Object.entries(r.vmmErrors).map(([k, v]) => [`error ${k}`, v])));
  out.push('', 'guest exits left unhandled (a #VC is handled by PVALIDATE and a retry: see vcExceptions)');
  out.push(rows(Object.entries(r.exits)));
  out.push('', 'findings (allowed by the kernel, maybe surprising)');
  out.push(
    rows([
      ['punch-hole leftovers', r.findings.punchHoleLeftovers],
      ['cross-VM prepares (pages a vCPU found owned by another VM)', r.findings.crossVmPrepare],
    ]),
  );
  out.push('', 'violations per invariant');
  out.push(rows(Object.entries(r.violations)));
  for (const v of r.violationDetails.slice(0, 10))
    out.push(`  ! ${v.invariant} (${v.by}${v.gfn !== undefined ? `, gfn ${v.gfn}` : ''}): ${v.detail}`);
  for (const c of r.crashes) out.push(`  ! ${c.actor} ${c.kind}: ${c.message}${c.stack ? `\n${c.stack}` : ''}`);
  return out.join('\n');
}

export function formatScenario(r: ScenarioReport): string {
  const out: string[] = [];
  for (const s of r.steps) {
    const json = s.value === undefined ? '' : JSON.stringify(s.value);
    const v = json.length > 160 ? ` ${json.slice(0, 157)}...` : json ? ` ${json}` : '';
    out.push(`${s.pass ? ' ok ' : 'FAIL'} [${s.index}] ${s.op} -> ${s.result}${v}${s.mismatch ? `\n       ${s.mismatch}` : ''}`);
  }
  if (r.interrupted) out.push('', 'audit: not run (interrupted)');
  else out.push('', `audit: ${r.audit.ok ? 'all invariants hold' : 'VIOLATIONS'} ${JSON.stringify(r.audit.counts)}`);
  for (const v of r.audit.violations.slice(0, 10)) out.push(`  ! ${v.invariant}: ${v.detail}`);
  out.push(`findings: punch-hole leftovers ${r.findings.punchHoleLeftovers}, cross-VM prepares ${r.findings.crossVmPrepare}`);
  for (const c of r.crashes) out.push(`  ! ${c.actor} ${c.kind}: ${c.message}${c.stack ? `\n${c.stack}` : ''}`);
  out.push(r.interrupted ? `INTERRUPTED after ${r.steps.length} step(s) (partial result)` : r.ok ? 'PASS' : 'FAIL');
  return out.join('\n');
}

/** A plain text table with aligned columns. */
export function table(columns: string[], rows: Array<Array<string | number>>): string {
  const cells = [columns, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? c.toLocaleString('en-US') : c)))];
  const w = columns.map((_, i) => Math.max(...cells.map((r) => String(r[i]).length)));
  return cells
    .map(
      (r, j) =>
        r.map((c, i) => (i === 0 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ') +
        (j === 0 ? `\n${w.map((n) => '-'.repeat(n)).join('  ')}` : ''),
    )
    .join('\n');
}

/** One character per page: the owning VM's index, '.' hypervisor-owned, '-' no folio. */
export function pageMap(pages: Array<number | 'shared' | null>, width = 64): string {
  const chars = pages.map((p) => (p === null ? '-' : p === 'shared' ? '.' : String(p)));
  const lines: string[] = [];
  for (let i = 0; i < chars.length; i += width) lines.push(chars.slice(i, i + width).join(''));
  return lines.join('\n               ');
}

export function formatMultiVm(rs: MultiVmResult[]): string {
  const out = [
    table(
      ['kernel', 'faults', 'arch prepares', 'for other VMs', 'per fault', 'RMP violations', 'contested', 'pages per VM'],
      rs.map((r) => [
        r.kernel,
        r.faults,
        r.archPrepareCalls,
        r.crossVmArchPrepareCalls,
        r.archPreparePerFault.toFixed(2),
        r.rmpViolations,
        r.owners.contested,
        r.owners.byVm.map((n, i) => `VM${i}:${n}`).join(' '),
      ]),
    ),
    '',
  ];
  for (const r of rs) out.push(`${r.kernel} (${r.policy}): ${r.sentence}`, `  page owners: ${pageMap(r.owners.pages)}`, '');
  out.push('(page owners: the VM that owns each page of the shared inode; . hypervisor-owned, - no folio)');
  return out.join('\n').trimEnd();
}

export function formatPolicies(rows: PolicyRow[]): string {
  return table(
    [
      'kernel',
      'prepare policy',
      'faults',
      'prepares',
      'arch prepares',
      'fw commands',
      'leftovers',
      'faults/s',
      'LAUNCH_UPDATE after fallocate',
      'violations',
    ],
    rows.map((r) => [
      r.kernel,
      r.policy,
      r.faults,
      r.prepares,
      r.archPrepareCalls,
      r.firmwareCommands,
      r.punchHoleLeftovers,
      Math.round(r.faultsPerSecond),
      r.launchUpdateAfterFallocate,
      r.violations,
    ]),
  );
}

export function formatConversion(rows: ConversionRow[]): string {
  const out = [table(CONVERSION_COLUMNS, rows.map(conversionCells)), ''];
  for (const r of rows) out.push(`${r.kernel}: ${r.sentence}`, '');
  return out.join('\n').trimEnd();
}
