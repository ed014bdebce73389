#!/usr/bin/env node
// Writes test/durations.json, the seconds each test file took, from a vitest JSON report:
//   npx vitest run --reporter=json --outputFile=/tmp/vt.json && node scripts/test-durations.mjs /tmp/vt.json
// The test sequencer (test/helpers/sequencer.ts) starts the longest files first on a clean clone,
// which has no vitest cache to order them by; rerun this after adding or reshaping a long file.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const report = process.argv[2];
if (!report) {
  process.stderr.write('usage: node scripts/test-durations.mjs REPORT.json (vitest --reporter=json)\n');
  process.exit(2);
}
const { testResults } = JSON.parse(readFileSync(report, 'utf8'));
const rows = testResults
  .map((f) => [relative(root, f.name), Math.round((f.endTime - f.startTime) / 100) / 10])
  .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
writeFileSync(join(root, 'test/durations.json'), `${JSON.stringify(Object.fromEntries(rows), null, 2)}\n`);
process.stdout.write(`test/durations.json: ${rows.length} files, ${rows.reduce((s, r) => s + r[1], 0).toFixed(0)} s in all\n`);
