// `gmem-sandbox catalogue`: the historical bugs the sandbox reproduces by running the kernel
// version that had them, the accepted races (findings), and the posted patches a version can be
// run with (--patch).

import { KERNEL_PATCHES, PATCH_NAMES } from '../gmem/version.js';
import { CATALOGUE, type HistoricalBug } from '../vmm/explore/catalogue.js';
import { EXIT } from './exit.js';

export function catalogueCommand(o: { json?: boolean }): number {
  if (o.json) {
    const bugs = CATALOGUE.map((b) => ({
      ...b,
      detail: b.detail.source,
      ...(b.alsoReports ? { alsoReports: b.alsoReports.map((a) => ({ invariant: a.invariant, detail: a.detail.source })) } : {}),
    }));
    process.stdout.write(`${JSON.stringify({ bugs, patches: PATCH_NAMES.map((p) => KERNEL_PATCHES[p]) }, null, 2)}\n`);
    return EXIT.PASS;
  }
  for (const b of CATALOGUE) process.stdout.write(describeBug(b));
  process.stdout.write('patches (--patch NAME, on top of any version)\n\n');
  for (const name of PATCH_NAMES) {
    const p = KERNEL_PATCHES[name];
    const fixes = CATALOGUE.filter((b) => b.fixedByPatch === name).map((b) => b.id);
    process.stdout.write(
      `${name}\n  ${p.title}\n  posted: ${p.posted}\n  status: ${p.status}\n  does: ${p.what}\n${fixes.length ? `  fixes: ${fixes.join(', ')}\n` : ''}\n`,
    );
  }
  return EXIT.PASS;
}

function describeBug(b: HistoricalBug): string {
  const fixed = b.fixedBy !== null ? `fixed by ${b.fixedBy}` : b.invariant === 'finding' ? 'accepted (a finding)' : 'no fix merged';
  const patch = b.fixedByPatch !== undefined ? `; gone with --patch ${b.fixedByPatch}` : '';
  const reports = [b.invariant, ...(b.alsoReports ?? []).map((a) => a.invariant)].join(' or ');
  const run =
    b.workload !== undefined
      ? `gmem-sandbox explore --catalogue ${b.id} [${b.fixed[0] !== undefined ? `--kernel ${b.fixed[0]}` : b.fixedByPatch !== undefined ? `--patch ${b.fixedByPatch}` : `--kernel ${b.buggy[0]}`}]`
      : `gmem-sandbox run ${b.scenario}`;
  return `${b.id}\n  ${b.title}\n  buggy: ${b.buggy.join(', ')}; ${fixed}${b.fixed.length ? ` (${b.fixed.join(', ')})` : ''}${patch}\n  reports: ${reports}\n  how: ${b.how}\n  try: ${run}\n\n`;
}
