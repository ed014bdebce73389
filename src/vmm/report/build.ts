// ReportData from a run's results: one builder per command that can write --report.

import { Policy } from '../../gmem/policy.js';
import { VERSIONS } from '../../gmem/version.js';
import type { MultiVmResult, PolicyRow } from '../experiments/experiments.js';
import type { ScenarioReport } from '../scenario/runner.js';
import type { StressReport } from '../stress/stress.js';
import type { PageMap, ReportData, ReportTable } from './model.js';

function base(title: string, command: string): Pick<ReportData, 'title' | 'command' | 'generatedAt'> {
  return { title, command, generatedAt: new Date().toISOString() };
}

function kv(title: string, o: Record<string, number | string>, note?: string): ReportTable {
  return {
    title,
    columns: ['name', 'value'],
    rows: Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? Math.round(v * 100) / 100 : v]),
    ...(note ? { note } : {}),
  };
}

function violationsTable(r: StressReport): ReportTable {
  return {
    title: 'Invariants',
    columns: ['invariant', 'violations'],
    rows: Object.entries(r.violations).map(([k, v]) => [k, v]),
    note: r.ok
      ? 'Every invariant held.'
      : `${r.violationDetails.length} violation(s) recorded; the first: ${r.violationDetails[0]?.detail ?? '(a crash, see below)'}`,
  };
}

export function reportFromStress(r: StressReport, command: string): ReportData {
  const c = r.config;
  return {
    ...base('gmem-sandbox stress', command),
    seed: r.seed,
    summary: [
      ['verdict', r.ok ? 'PASS' : 'FAIL'],
      ['policy', c.policy],
      ['VMs', `${c.vms} x ${c.vmType}, ${c.vcpus} vCPU(s) each`],
      ['duration', `${(c.durationMs / 1000).toFixed(1)} s`],
      ['faults/s', Math.round(r.faultsPerSecond)],
      ['punch-hole leftovers', r.findings.punchHoleLeftovers],
    ],
    tables: [
      kv('Kernel paths', r.counters),
      kv('VMM operations', r.vmmOps),
      kv('Guest exits', r.exits),
      violationsTable(r),
      ...(r.crashes.length
        ? [{ title: 'Crashes', columns: ['actor', 'kind', 'message'], rows: r.crashes.map((x) => [x.actor, x.kind, x.message]) }]
        : []),
    ],
    faultLatency: r.faultLatency,
    throughput: r.throughput,
    lockWaits: r.lockWaits,
  };
}

/** The charts of an experiment: one labelled series per kernel version, none pooled. */
function perKernelCharts(
  runs: Array<{ kernel: string; policy: string; run: StressReport }>,
): Pick<ReportData, 'faultLatency' | 'throughput' | 'lockWaits' | 'series'> {
  return {
    faultLatency: [],
    throughput: [],
    lockWaits: [],
    series: runs.map((r) => ({
      name: `${r.kernel} (${r.policy})`,
      faultLatency: r.run.faultLatency,
      throughput: r.run.throughput,
      lockWaits: r.run.lockWaits,
    })),
  };
}

/** The owner character of a page, as the text report's page map has it. */
function ownerChar(p: number | 'shared' | null): string {
  return p === null ? '-' : p === 'shared' ? '.' : String(p);
}

function ownerMaps(results: MultiVmResult[]): PageMap {
  const vms = results[0]?.owners.byVm.length ?? 0;
  return {
    title: 'Who owns each page of the shared inode',
    key: [...Array.from({ length: vms }, (_, i): [string, string] => [String(i), `VM ${i}`]), ['.', 'hypervisor-owned'], ['-', 'no folio']],
    rowPages: 64,
    maps: results.map((r) => ({ name: r.kernel, pages: r.owners.pages.map(ownerChar).join('') })),
  };
}

export function reportFromMultiVm(results: MultiVmResult[], command: string): ReportData {
  return {
    ...base('gmem-sandbox experiment multi-vm', command),
    seed: results[0]?.run.seed,
    summary: [
      ['VMs bound to one guest_memfd', results[0]?.owners.byVm.length ?? 0],
      ['kernels', results.map((r) => r.kernel).join(', ')],
    ],
    tables: [
      {
        title: 'Per kernel version',
        columns: [
          'kernel',
          'prepare policy',
          'faults',
          'arch prepares',
          'arch prepares for other VMs',
          'per fault',
          'RMP violations',
          'contested pages',
          'owners (pages per VM)',
        ],
        rows: results.map((r) => [
          r.kernel,
          r.policy,
          r.faults,
          r.archPrepareCalls,
          r.crossVmArchPrepareCalls,
          Math.round(r.archPreparePerFault * 100) / 100,
          r.rmpViolations,
          r.owners.contested,
          // No-break spaces keep each "VM i: n" on one line when the cell wraps.
          r.owners.byVm.map((n, i) => `VM\u00a0${i}:\u00a0${n}`).join(', '),
        ]),
        paragraphs: results.map((r) => ({ lead: r.kernel, text: `(${r.policy}): ${r.sentence}` })),
      },
    ],
    pageMaps: [ownerMaps(results)],
    ...perKernelCharts(results),
  };
}

/** Where a kernel version prepares folios, and for which VMs (as gmem/policy.ts has it). */
const PREPARES: Record<Policy, string> = {
  [Policy.ON_ALLOCATE]: 'prepares folios at fallocate and again in every get_pfn, for every VM bound to the inode',
  [Policy.ON_FAULT]: 'prepares a folio only in get_pfn (at fault time), once per folio, for every VM bound to the inode',
  [Policy.ON_FAULT_OWN_VM]: 'prepares a folio only in get_pfn (at fault time), once per folio, for the faulting VM only',
  [Policy.ON_EVERY_FAULT]:
    'clears a folio once in get_pfn and calls the arch prepare for the faulting VM on every fault; the hook leaves a page it already owns alone',
};

/** What LAUNCH_UPDATE after fallocate gave, and why when the policy says so. */
function launchSentence(r: PolicyRow, policy: Policy): string {
  const got = r.launchUpdateAfterFallocate;
  if (policy === Policy.ON_ALLOCATE && got !== 'ok')
    return `LAUNCH_UPDATE of a page after fallocate failed with ${got}: fallocate had already prepared (registered) it.`;
  if (policy !== Policy.ON_ALLOCATE && got === 'ok')
    return 'LAUNCH_UPDATE of a page after fallocate succeeded: fallocate left it unprepared.';
  return `LAUNCH_UPDATE of a page after fallocate: ${got}.`;
}

/** One paragraph per kernel version: its prepare policy, what the run counted, and LAUNCH_UPDATE after fallocate. */
function explainPolicy(r: PolicyRow): string {
  const policy = VERSIONS[r.kernel].prepare;
  const violations = r.violations === 0 ? 'no invariant violations' : `${r.violations} invariant violation${r.violations === 1 ? '' : 's'}`;
  const leftovers = `${r.punchHoleLeftovers} punch-hole leftover${r.punchHoleLeftovers === 1 ? '' : 's'}`;
  return (
    `(${r.policy}) ${PREPARES[policy]}: ${r.prepares} prepares and ${r.archPrepareCalls} arch prepares for ${r.faults} faults. ` +
    `${launchSentence(r, policy)} ${leftovers}; ${violations}.`
  );
}

export function reportFromPolicies(rows: PolicyRow[], command: string): ReportData {
  return {
    ...base('gmem-sandbox experiment policies', command),
    seed: rows[0]?.run.seed,
    summary: [['workload', 'the default stress workload, same seed on each kernel version']],
    tables: [
      {
        title: 'Kernel versions (prepare policies) side by side',
        columns: [
          'kernel',
          'prepare policy',
          'faults',
          'prepares',
          'arch prepares',
          'firmware commands',
          'punch-hole leftovers',
          'faults/s',
          'LAUNCH_UPDATE after fallocate',
          'violations',
        ],
        rows: rows.map((r) => [
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
        paragraphs: rows.map((r) => ({ lead: r.kernel, text: explainPolicy(r) })),
      },
    ],
    ...perKernelCharts(rows),
  };
}

export function reportFromScenario(r: ScenarioReport, file: string, command: string): ReportData {
  return {
    ...base(`gmem-sandbox run ${file}`, command),
    summary: [
      ['verdict', r.ok ? 'PASS' : 'FAIL'],
      ['steps', r.steps.length],
      ['punch-hole leftovers', r.findings.punchHoleLeftovers],
    ],
    tables: [
      {
        title: 'Steps',
        columns: ['#', 'op', 'result', 'expected', 'pass', 'value'],
        rows: r.steps.map((s) => [
          s.index,
          s.op,
          s.result,
          s.expect ?? '',
          s.pass ? 'yes' : 'NO',
          s.value === undefined ? '' : JSON.stringify(s.value).slice(0, 120),
        ]),
      },
      { title: 'Invariants', columns: ['invariant', 'violations'], rows: Object.entries(r.audit.counts).map(([k, v]) => [k, v]) },
    ],
    faultLatency: r.faultLatency,
    throughput: [],
    lockWaits: r.lockWaits,
  };
}
