// `gmem-sandbox catalogue`: the historical bugs, the accepted races, what the model cannot
// express, the behaviour changes between versions, and the posted patches a version can be run
// with (--patch).

import { KERNEL_PATCHES, PATCH_NAMES } from '../gmem/version.js';
import { CHANGES } from '../vmm/explore/changes.js';
import { CATALOGUE, type HistoricalBug, INEXPRESSIBLE } from '../vmm/explore/catalogue.js';

export function printCatalogue(json: boolean): void {
  if (json) {
    const bugs = [
      ...CATALOGUE.map((b) => ({
        ...b,
        expressible: true,
        detail: b.detail.source,
        ...(b.alsoReports ? { alsoReports: b.alsoReports.map((a) => ({ invariant: a.invariant, detail: a.detail.source })) } : {}),
        // The posted patch that fixes it, in full: no version has it, so nothing else describes it.
        ...(b.fixedByPatch !== undefined ? { patch: KERNEL_PATCHES[b.fixedByPatch] } : {}),
      })),
      ...INEXPRESSIBLE,
    ];
    process.stdout.write(`${JSON.stringify(bugs, null, 2)}\n`);
    return;
  }
  for (const b of CATALOGUE) process.stdout.write(describeBug(b));
  for (const b of INEXPRESSIBLE) {
    process.stdout.write(
      `${b.id}\n  ${b.title}\n  buggy: ${b.buggyIn}; fixed by ${b.fixedBy} (${b.fixed.join(', ')})\n  cannot be expressed in this model: ${b.why}\n  try: nothing to run\n\n`,
    );
  }
  process.stdout.write('Behaviour changes between versions (not bugs):\n\n');
  for (const c of CHANGES) {
    process.stdout.write(`${c.id}\n  ${c.title}\n  ${c.before} -> ${c.after}: ${c.commit}\n  ${c.what}\n  shown by: ${c.shownBy}\n\n`);
  }
  process.stdout.write('Posted patches no version has (--patch NAME, on top of any version):\n\n');
  for (const name of PATCH_NAMES) {
    const p = KERNEL_PATCHES[name];
    const fixes = CATALOGUE.filter((b) => b.fixedByPatch === name).map((b) => b.id);
    process.stdout.write(
      `${name}\n  ${p.title}\n  posted: ${p.posted}\n  status: ${p.status}\n  does: ${p.what}\n${fixes.length ? `  fixes: ${fixes.join(', ')}\n` : ''}\n`,
    );
  }
}

function describeBug(b: HistoricalBug): string {
  const fixed = b.fixedBy !== null ? `fixed by ${b.fixedBy}` : b.invariant === 'finding' ? 'accepted (a finding)' : 'no fix merged';
  const patch = b.fixedByPatch !== undefined ? `; gone with --patch ${b.fixedByPatch}` : '';
  const reports = [b.invariant, ...(b.alsoReports ?? []).map((a) => a.invariant)].join(' or ');
  const other =
    b.fixed[0] !== undefined
      ? `--kernel ${b.fixed[0]}`
      : b.fixedByPatch !== undefined
        ? `--patch ${b.fixedByPatch}`
        : `--kernel ${b.buggy[0]}`;
  const run = b.workload !== undefined ? `gmem-sandbox explore --catalogue ${b.id} [${other}]` : `gmem-sandbox run ${b.scenario}`;
  return `${b.id}\n  ${b.title}\n  buggy: ${b.buggy.join(', ')}; ${fixed}${b.fixed.length ? ` (${b.fixed.join(', ')})` : ''}${patch}\n  reports: ${reports}\n  how: ${b.how}\n  try: ${run}\n\n`;
}
