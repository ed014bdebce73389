// The experiment reports (experiment multi-vm, experiment policies) compare kernel versions, so
// their HTML keeps each version apart: one labelled chart series per version with a legend (no
// pooled histogram), one explanation paragraph per version opening with its name, and a
// page-owner map of whole 64-page rows. The prepare policy each paragraph of the policies report
// states is the version's (gmem/version.ts: 6.10 prepares at fallocate, b85524314a at fault for
// every bound VM, 6dd761d92f66 in 6.11 at fault for the faulting VM only).

import { describe, expect, it } from 'vitest';
import type { MultiVmResult, PolicyRow } from '../../src/vmm/experiments/experiments.js';
import { reportFromMultiVm, reportFromPolicies } from '../../src/vmm/report/build.js';
import { renderReport } from '../../src/vmm/report/html.js';

const KERNELS = [
  ['6.10', 'prepare-on-allocate'],
  ['b85524314a', 'prepare-on-fault'],
  ['6.11', 'prepare-on-fault-own-vm'],
] as const;

/** The parts of a run the builders read; run i's faults all fall in bucket [2^(10+i), 2^(11+i)). */
function run(i: number) {
  return {
    seed: 9,
    faultLatency: [0, 1, 2].map((j) => ({ lowNs: 2 ** (10 + j), highNs: 2 ** (11 + j), count: j === i ? 100 + i : 0 })),
    throughput: [100, 200, 300].map((tMs) => ({ tMs, faultsPerSecond: 1000 * (i + 1) })),
    lockWaits: [
      { lock: 'mmu', waitMs: 10 * (i + 1), contended: i + 1 },
      { lock: 'srcu', waitMs: 0, contended: 0 },
    ],
  };
}

// 130 pages: two whole rows of 64 and a last row of 2.
const PAGES: Array<number | 'shared' | null> = Array.from({ length: 130 }, (_, p) => (p < 64 ? p % 2 : p < 128 ? 'shared' : null));
const MAP = '01'.repeat(32) + '.'.repeat(64) + '--';

function multiVm(): MultiVmResult[] {
  return KERNELS.map(([kernel, policy], i) => ({
    kernel,
    policy,
    faults: 512,
    archPrepareCalls: 192,
    crossVmArchPrepareCalls: 0,
    archPreparePerFault: 0.375,
    rmpViolations: 7,
    owners: { byVm: [32, 32], pages: PAGES, unassigned: 64, contested: 128 },
    firstInList: 1,
    sentence: `Sentence of ${kernel} <&>.`,
    run: run(i),
  })) as unknown as MultiVmResult[];
}

function policies(): PolicyRow[] {
  return KERNELS.map(([kernel, policy], i) => ({
    kernel,
    policy,
    faults: 4000 + i,
    prepares: 3000 + i,
    archPrepareCalls: 3100 + i,
    firmwareCommands: 2,
    punchHoleLeftovers: i,
    faultsPerSecond: 2000.5,
    launchUpdateAfterFallocate: i === 0 ? 'EIO (populate: EINVAL)' : 'ok',
    violations: 0,
    run: run(i),
  })) as unknown as PolicyRow[];
}

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;
function svg(html: string, id: string): string {
  const start = html.indexOf(`<svg id="${id}"`);
  expect(start, `svg#${id}`).toBeGreaterThanOrEqual(0);
  return html.slice(start, html.indexOf('</svg>', start) + 6);
}

describe('experiment reports keep kernel versions apart', () => {
  it('multi-vm: one chart series per kernel version, never pooled', () => {
    const results = multiVm();
    const data = reportFromMultiVm(results, 'gmem-sandbox experiment multi-vm');
    expect(data.series?.map((s) => s.name)).toEqual([
      '6.10 (prepare-on-allocate)',
      'b85524314a (prepare-on-fault)',
      '6.11 (prepare-on-fault-own-vm)',
    ]);
    data.series!.forEach((s, i) => expect(s.faultLatency).toEqual(results[i].run.faultLatency));
    expect([data.faultLatency, data.throughput, data.lockWaits]).toEqual([[], [], []]);

    const html = renderReport(data);
    for (const id of ['chart-fault-latency', 'chart-throughput', 'chart-lock-waits']) {
      const s = svg(html, id);
      expect(count(s, /<g class="legend-item" data-series="\d">/g), id).toBe(3);
      expect(s).toContain('>b85524314a (prepare-on-fault)</text>');
    }
    // Each run filled one bucket of its own: three bars, each in its own series and bucket.
    const lat = svg(html, 'chart-fault-latency');
    expect(count(lat, /<rect class="bar[^"]*"/g)).toBe(3);
    for (const i of [0, 1, 2]) expect(count(lat, new RegExp(`<rect class="bar series-${i}" data-series="${i}"`, 'g'))).toBe(1);
    expect(lat).toContain('<title>6.11 (prepare-on-fault-own-vm): [4.1µs, 8.2µs): 102 faults</title>');
    expect(count(svg(html, 'chart-throughput'), /<polyline class="line series-\d" data-series="\d"/g)).toBe(3);
    // srcu was never waited on in any run: named under the chart, not drawn.
    const locks = svg(html, 'chart-lock-waits');
    expect(count(locks, /<rect class="bar/g)).toBe(3);
    expect(locks).toContain('No wait or contention in any run: srcu.');
  });

  it('multi-vm: one explanation paragraph per kernel version, opening with its name', () => {
    const html = renderReport(reportFromMultiVm(multiVm(), 'x'));
    const paras = html.match(/<p class="explanation">.*?<\/p>/g) ?? [];
    expect(paras).toEqual(
      KERNELS.map(([k, p]) => `<p class="explanation"><strong>${k}</strong> (${p}): Sentence of ${k} &lt;&amp;&gt;.</p>`),
    );
  });

  it('multi-vm: the page-owner map is whole rows of 64 pages, in page order', () => {
    const data = reportFromMultiVm(multiVm(), 'x');
    expect(data.pageMaps?.[0].maps.map((m) => m.pages)).toEqual([MAP, MAP, MAP]);
    expect(data.tables.map((t) => t.title)).toEqual(['Per kernel version']);
    const html = renderReport(data);
    const rows = html.match(/<span class="row" data-first="\d+">.*?<\/span><\/span>/g) ?? [];
    expect(rows.map((r) => /data-first="(\d+)"/.exec(r)![1])).toEqual(['0', '64', '128', '0', '64', '128', '0', '64', '128']);
    const text = rows.map((r) => r.replace(/<[^>]*>/g, ''));
    expect(text.slice(0, 3)).toEqual([MAP.slice(0, 64), MAP.slice(64, 128), '--']);
    expect(html).toContain('<span class="vm0"><code>0</code> VM 0</span>');
    expect(html).toContain('<span class="none"><code>-</code> no folio</span>');
  });

  it('policies: a paragraph per kernel version naming its prepare policy and LAUNCH_UPDATE result', () => {
    const data = reportFromPolicies(policies(), 'x');
    const paras = data.tables[0].paragraphs!;
    expect(paras.map((p) => p.lead)).toEqual(['6.10', 'b85524314a', '6.11']);
    expect(paras[0].text).toBe(
      '(prepare-on-allocate) prepares folios at fallocate and again in every get_pfn, for every VM bound to the inode: ' +
        '3000 prepares and 3100 arch prepares for 4000 faults. LAUNCH_UPDATE of a page after fallocate failed with ' +
        'EIO (populate: EINVAL): fallocate had already prepared (registered) it. 0 punch-hole leftovers; no invariant violations.',
    );
    expect(paras[1].text).toContain('only in get_pfn (at fault time), once per folio, for every VM bound to the inode');
    expect(paras[1].text).toContain('LAUNCH_UPDATE of a page after fallocate succeeded: fallocate left it unprepared.');
    expect(paras[2].text).toContain('for the faulting VM only');
    expect(paras[1].text).toContain(' 1 punch-hole leftover; ');
    expect(paras[2].text).toContain(' 2 punch-hole leftovers; ');
    const html = renderReport(data);
    expect(count(html, /<p class="explanation"><strong>/g)).toBe(3);
    expect(html).not.toMatch(/<script|<link\b|(?:src|href)=["']?https?:|url\(|@import/i);
  });
});
