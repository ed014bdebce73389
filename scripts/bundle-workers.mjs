#!/usr/bin/env node
// Bundles each worker entry tsc wrote under dist/ into one ES module (dist/workers/*.js), so that
// a worker thread loads one file instead of about a hundred. Run by `npm run build`, after tsc.
// The entries are listed in src/vmm/sandbox/worker-entries.ts.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const dist = join(dirname(fileURLToPath(import.meta.url)), '../dist');
const { WORKER_BUNDLES } = await import(join(dist, 'src/vmm/sandbox/worker-entries.js'));

await build({
  entryPoints: Object.entries(WORKER_BUNDLES).map(([entry, bundle]) => ({ in: join(dist, entry), out: bundle.replace(/\.js$/, '') })),
  outdir: dist,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Names stay as written, and a source map (which runtime.ts turns on for the bundles) takes a
  // stack trace back to the file each frame came from: lockdep's code sites name src/kvm/sev.ts.
  keepNames: true,
  sourcemap: 'linked',
  sourcesContent: false,
  logLevel: 'warning',
});
