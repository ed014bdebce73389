// vitest globalSetup: every test process (and every CLI a test spawns) gets TMPDIR pointing into
// one directory made for this run. At the end it must be empty, since each test removes what it
// made: a leftover fails the run, naming what was left, and the directory is removed anyway, so
// `npm test` leaves nothing in the system temp directory.

import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'gmem-test-run-'));
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = root;
  return () => {
    const left = readdirSync(root);
    rmSync(root, { recursive: true, force: true });
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    if (left.length > 0)
      throw new Error(
        `tests left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in the temp directory: ${left.slice(0, 10).join(', ')}`,
      );
  };
}
