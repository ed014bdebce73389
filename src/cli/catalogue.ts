// `gmem-sandbox catalogue`: the historical bugs, the accepted races, what the model cannot
// express, and the behaviour changes between versions.

import { CHANGES } from '../vmm/explore/changes.js';
import { CATALOGUE, INEXPRESSIBLE } from '../vmm/explore/catalogue.js';

export function printCatalogue(json: boolean): void {
  if (json) {
    const bugs = [...CATALOGUE.map((b) => ({ ...b, expressible: true, detail: b.detail.source })), ...INEXPRESSIBLE];
    process.stdout.write(`${JSON.stringify(bugs, null, 2)}\n`);
    return;
  }
  for (const b of CATALOGUE) {
    const fixed = b.fixedBy !== null ? `fixed by ${b.fixedBy}` : b.invariant === 'finding' ? 'accepted (a finding)' : 'no fix merged';
    const run =
      b.workload !== undefined
        ? `gmem-sandbox explore --catalogue ${b.id} [--kernel ${b.fixed[0] ?? b.buggy[0]}]`
        : `gmem-sandbox run ${b.scenario}`;
    process.stdout.write(
      `${b.id}\n  ${b.title}\n  buggy: ${b.buggy.join(', ')}; ${fixed}${b.fixed.length ? ` (${b.fixed.join(', ')})` : ''}\n  reports: ${b.invariant}\n  how: ${b.how}\n  try: ${run}\n\n`,
    );
  }
  for (const b of INEXPRESSIBLE) {
    process.stdout.write(
      `${b.id}\n  ${b.title}\n  buggy: ${b.buggyIn}; fixed by ${b.fixedBy} (${b.fixed.join(', ')})\n  cannot be expressed in this model: ${b.why}\n  try: nothing to run\n\n`,
    );
  }
  process.stdout.write('Behaviour changes between versions (not bugs):\n\n');
  for (const c of CHANGES) {
    process.stdout.write(`${c.id}\n  ${c.title}\n  ${c.before} -> ${c.after}: ${c.commit}\n  ${c.what}\n  shown by: ${c.shownBy}\n\n`);
  }
}
