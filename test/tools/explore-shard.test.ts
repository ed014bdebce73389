// explore --shard K/N, --jobs N and merge: the shards of a search merge into what the unsharded
// search reports (found, the first failing seed, the schedules it took), two explorers in one
// process report what one does, and a missing shard makes the merge incomplete. The search hunts the
// dying-file unbind of 6.11 (kvm_gmem_unbind, fixed by ae431059e75d).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, tempDir } from '../helpers/cli-helpers.js';

describe('explore --shard, --jobs and merge', () => {
  it('two shards merge into the unsharded result; one shard alone is incomplete (exit 1)', async () => {
    const dir = tempDir();
    const base = [
      'explore',
      '--catalogue',
      'gmem-unbind-dying-file',
      '--schedules',
      '40',
      '--seed',
      '3',
      '--no-shrink',
      '--out',
      dir,
      '--json',
    ];
    // The whole search and its two shards at once, with the refused command lines beside them.
    const [all, s0, s1, badJobs, bad] = await Promise.all([
      cli(base),
      // Each its own --out (the last one given counts): all find, and save, the same schedule.
      cli([...base, '--shard', '0/2', '--out', join(dir, 'shard0')]),
      cli([...base, '--shard', '1/2', '--out', join(dir, 'shard1')]),
      cli(['explore', '--jobs', '0']),
      cli(['explore', '--shard', '2/2']),
    ]);
    for (const r of [all, s0, s1]) expect(r.status, r.stderr).toBe(0);
    const unsharded = JSON.parse(all.stdout).results[0];
    expect(unsharded.found).toBe(true);
    writeFileSync(join(dir, 's0.json'), s0.stdout);
    writeFileSync(join(dir, 's1.json'), s1.stdout);
    // Two explorers in one process report what one does: the same first failing seed, after as many schedules.
    const [merged, partial, jobs] = await Promise.all([
      cli(['merge', join(dir, 's0.json'), join(dir, 's1.json'), '--json']),
      cli(['merge', join(dir, 's1.json')]),
      cli([...base, '--jobs', '2', '--out', join(dir, 'jobs')]),
    ]);
    expect(merged.status, merged.stderr).toBe(0);
    const m = JSON.parse(merged.stdout);
    expect(m.results[0]).toMatchObject({
      found: unsharded.found,
      seed: unsharded.seed,
      schedules: unsharded.schedules,
      violation: unsharded.violation,
    });
    expect(m.missingShards).toEqual([]);
    expect(partial.status).toBe(1);
    expect(partial.stdout).toMatch(/merge: INCOMPLETE, shards missing: 0\/2/);
    expect(jobs.status, jobs.stderr).toBe(0);
    expect(JSON.parse(jobs.stdout).results[0]).toMatchObject({
      found: true,
      seed: unsharded.seed,
      schedules: unsharded.schedules,
      violation: unsharded.violation,
    });
    expect(badJobs.status).toBe(2);
    expect(badJobs.stderr).toMatch(/--jobs must be an integer from 1 to 16, got '0'/);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--shard: K is 0-based and must be from 0 to 1 .*, got '2\/2'/);
  }, 60_000);
});
