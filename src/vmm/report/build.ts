// ReportData from a run's results: one builder per command that can write --report.

import type { MultiVmResult, PolicyRow } from '../experiments/experiments.js';
import type { ScenarioReport } from '../scenario/runner.js';
import type { StressReport } from '../stress/stress.js';
import type { ReportData, ReportTable } from './model.js';

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

/** Merges the charts of several runs: histograms and lock waits add up, throughput is the first run's. */
function mergedCharts(runs: StressReport[]): Pick<ReportData, 'faultLatency' | 'throughput' | 'lockWaits'> {
  const hist = new Map<number, { lowNs: number; highNs: number; count: number }>();
  for (const r of runs) for (const b of r.faultLatency) hist.set(b.lowNs, { ...b, count: (hist.get(b.lowNs)?.count ?? 0) + b.count });
  const locks = new Map<string, { lock: string; waitMs: number; contended: number }>();
  for (const r of runs)
    for (const l of r.lockWaits) {
      const x = locks.get(l.lock) ?? { lock: l.lock, waitMs: 0, contended: 0 };
      locks.set(l.lock, { lock: l.lock, waitMs: x.waitMs + l.waitMs, contended: x.contended + l.contended });
    }
  return {
    faultLatency: [...hist.values()].sort((a, b) => a.lowNs - b.lowNs),
    throughput: runs[0]?.throughput ?? [],
    lockWaits: [...locks.values()],
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
          r.owners.byVm.map((n, i) => `VM ${i}: ${n}`).join(', '),
        ]),
        note: results.map((r) => `${r.kernel}: ${r.sentence}`).join(' '),
      },
      {
        title: 'Who owns each page of the shared inode',
        columns: ['kernel', 'page owners (VM index per page; . hypervisor-owned, - no folio)'],
        rows: results.map((r) => [
          r.kernel,
          r.owners.pages
            .map((p) => (p === null ? '-' : p === 'shared' ? '.' : String(p)))
            .join('')
            .replace(/(.{64})/g, '$1 '),
        ]),
      },
    ],
    ...mergedCharts(results.map((r) => r.run)),
  };
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
        note: '6.10 (prepare-on-allocate) registers pages at fallocate, so a later LAUNCH_UPDATE of them fails; later versions prepare only at fault time.',
      },
    ],
    ...mergedCharts(rows.map((r) => r.run)),
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
