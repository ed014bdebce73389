// The HTML report (vmm/report/html.ts): one self-contained document with three accessible charts
// (fault latency buckets, throughput, lock waits), escaped strings, "no data" for empty data, and
// writeReport's directories. The tool's own output: no kernel function is modelled here.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { humanNs, renderReport, writeReport } from '../../src/vmm/report/html.js';
import type { ReportData } from '../../src/vmm/report/model.js';

function sample(): ReportData {
  return {
    title: 'prefault run: prepare-on-fault vs prepare-on-alloc',
    command: 'gmem-sandbox run --policy prepare-on-fault --vcpus 4 --seed 42 --report out/report.html',
    seed: 42,
    generatedAt: '2025-01-02T03:04:05.000Z',
    summary: [
      ['policy', 'prepare-on-fault'],
      ['faults', 1234],
      ['verdict', 'pass & "ok"'],
    ],
    tables: [
      {
        title: 'Per-vCPU faults',
        columns: ['vcpu', 'faults', 'p50 µs'],
        rows: [
          [0, 310, 1.5],
          [1, 301, 0.1 + 0.2],
          ['<script>alert(1)</script>', 0, 0],
        ],
        note: 'Faults taken by each vCPU <b>thread</b>.',
      },
    ],
    faultLatency: [
      { lowNs: 512, highNs: 1024, count: 0 },
      { lowNs: 1024, highNs: 2048, count: 10 },
      { lowNs: 2048, highNs: 4096, count: 40 },
      { lowNs: 4096, highNs: 8192, count: 0 },
      { lowNs: 8192, highNs: 16384, count: 7 },
      { lowNs: 16384, highNs: 32768, count: 0 },
    ],
    throughput: [
      { tMs: 0, faultsPerSecond: 0 },
      { tMs: 100, faultsPerSecond: 1200 },
      { tMs: 200, faultsPerSecond: 1800 },
      { tMs: 300, faultsPerSecond: 1500 },
      { tMs: 400, faultsPerSecond: 900 },
    ],
    lockWaits: [
      { lock: 'filemap_invalidate_lock', waitMs: 12.5, contended: 30 },
      { lock: 'kvm->slots_lock', waitMs: 3.25, contended: 4 },
      { lock: 'mmu_lock <rw>', waitMs: 0, contended: 0 },
    ],
  };
}

function empty(): ReportData {
  return { ...sample(), summary: [], tables: [], faultLatency: [], throughput: [], lockWaits: [] };
}

/** The markup of one <svg id="..."> ... </svg> element (charts never nest svgs). */
function svg(html: string, id: string): string {
  const start = html.indexOf(`<svg id="${id}"`);
  expect(start, `svg#${id} present`).toBeGreaterThanOrEqual(0);
  const end = html.indexOf('</svg>', start);
  return html.slice(start, end + '</svg>'.length);
}

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;
const IDS = ['chart-fault-latency', 'chart-throughput', 'chart-lock-waits'];

describe('HTML report', () => {
  const html = renderReport(sample());

  it('is one self-contained document', () => {
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(count(html, /<html/g)).toBe(1);
    expect(html).toContain('<title>prefault run: prepare-on-fault vs prepare-on-alloc</title>');
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<link\b/i);
    expect(html).not.toMatch(/(?:src|href)=["']?https?:/i);
    expect(html).not.toMatch(/url\(|@import/i);
    expect(html).toContain('<code>gmem-sandbox run --policy prepare-on-fault --vcpus 4 --seed 42 --report out/report.html</code>');
    expect(html).toContain('2025-01-02T03:04:05.000Z');
    expect(html).toMatch(/seed <strong>42<\/strong>/);
  });

  it('has the three charts, each accessible', () => {
    for (const id of IDS) {
      const s = svg(html, id);
      expect(s).toMatch(/^<svg [^>]*role="img"/);
      expect(s).toMatch(new RegExp(`<title id="${id}-title">[^<]+</title>`));
      expect(s).not.toContain('no data');
    }
  });

  it('draws one bar per non-empty latency bucket, with humanised labels', () => {
    const s = svg(html, 'chart-fault-latency');
    expect(count(s, /<rect class="bar"/g)).toBe(3);
    for (const label of ['>1µs<', '>2µs<', '>4.1µs<', '>8.2µs<']) expect(s).toContain(label);
    // Empty buckets at the ends are trimmed; the empty one in the middle keeps its slot.
    expect(s).not.toContain('>512ns<');
    expect(s).not.toContain('>16µs<');
  });

  it('draws one polyline point per throughput sample', () => {
    const s = svg(html, 'chart-throughput');
    const points = /<polyline class="line" points="([^"]*)"/.exec(s)?.[1] ?? '';
    expect(points.trim().split(/\s+/)).toHaveLength(5);
    expect(s).toMatch(/>0ms</);
    expect(s).toMatch(/>1\.5k</);
  });

  it('draws one bar per lock class, labelled with contended counts', () => {
    const s = svg(html, 'chart-lock-waits');
    expect(count(s, /<rect class="bar"/g)).toBe(3);
    expect(s).toContain('12.5 ms · 30 contended');
    expect(s).toContain('mmu_lock &lt;rw&gt;');
  });

  it('escapes every string from the data', () => {
    expect(html).toContain('<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>');
    expect(html).not.toContain('<script>alert(1)');
    expect(html).toContain('Faults taken by each vCPU &lt;b&gt;thread&lt;/b&gt;.');
    expect(html).toContain('pass &amp; &quot;ok&quot;');
    expect(html).toContain('<td class="num">0.3</td>'); // float noise trimmed
    const hostile = renderReport({ ...sample(), title: '</title><img src=x onerror=alert(1)>', command: '"; rm -rf / <x>' });
    expect(hostile).not.toContain('<img');
    expect(hostile).toContain('<title>&lt;/title&gt;&lt;img src=x onerror=alert(1)&gt;</title>');
    expect(hostile).toContain('<code>&quot;; rm -rf / &lt;x&gt;</code>');
  });

  it('renders empty data with a visible "no data" in every chart', () => {
    const e = renderReport(empty());
    for (const id of IDS) {
      const s = svg(e, id);
      expect(s).toContain('<text class="no-data"');
      expect(s).toContain('>no data</text>');
      expect(s).not.toMatch(/<rect class="bar"|<polyline/);
    }
    expect(e).toContain('No tables.');
  });

  it('renders a single point sensibly', () => {
    const one = renderReport({
      ...sample(),
      faultLatency: [{ lowNs: 2048, highNs: 4096, count: 5 }],
      throughput: [{ tMs: 250, faultsPerSecond: 800 }],
      lockWaits: [{ lock: 'only', waitMs: 1, contended: 1 }],
    });
    expect(count(svg(one, 'chart-fault-latency'), /<rect class="bar"/g)).toBe(1);
    const t = svg(one, 'chart-throughput');
    expect(/<polyline class="line" points="([^"]*)"/.exec(t)?.[1].split(' ')).toHaveLength(1);
    expect(t).toContain('<circle class="dot"'); // a lone point is still visible
    expect(t).not.toMatch(/NaN|Infinity/);
    expect(count(svg(one, 'chart-lock-waits'), /<rect class="bar"/g)).toBe(1);
    expect(one).not.toMatch(/NaN|Infinity/);
  });

  it('humanises nanoseconds', () => {
    expect(humanNs(500)).toBe('500ns');
    expect(humanNs(1024)).toBe('1µs');
    expect(humanNs(2048)).toBe('2µs');
    expect(humanNs(65536)).toBe('66µs');
    expect(humanNs(1_048_576)).toBe('1ms');
    expect(humanNs(3e9)).toBe('3s');
  });

  describe('writeReport', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmem-report-test-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('creates parent directories and writes UTF-8', () => {
      const file = join(dir, 'a', 'b', 'report.html');
      writeReport(file, sample());
      const text = readFileSync(file, 'utf8');
      expect(text).toBe(renderReport(sample()));
      expect(text).toContain('µs');
    });
  });
});
