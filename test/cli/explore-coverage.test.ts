// explore --coverage: what the schedules of a search reached, as the CLI reports it (text and
// JSON). The explorer runs the in-process firmware (no mailbox), so the firmware worker's point
// is never reached; RMPUPDATE's FAIL_OVERLAP retry (rmpupdate_noremap's retry loop) is a path
// the default workload does not provoke. Both must be listed as never reached.

import { describe, expect, it } from 'vitest';
import { POINTS } from '../../src/shm/points.js';
import { COVERAGE_EVENTS } from '../../src/vmm/explore/coverage.js';
import { cli, tempDir } from '../helpers/cli-helpers.js';

describe('explore --coverage', () => {
  it('counts, per named point, event and op pair, the schedules that reached it, and lists what none did', async () => {
    const dir = tempDir('coverage');
    const args = ['explore', '--kernel', '7.0', '--schedules', '40', '--out', dir, '--coverage'];
    const [json, text, plain] = await Promise.all([cli([...args, '--json']), cli(args), cli(args.slice(0, -1))]);
    expect(json.status).toBe(0);
    const c = JSON.parse(json.stdout).results[0].coverage;
    expect(c.schedules).toBe(40);
    expect(Object.keys(c.points)).toEqual([...POINTS]);
    expect(Object.keys(c.events)).toEqual([...COVERAGE_EVENTS]);
    // Every schedule runs guests that fault.
    expect(c.points['fault.begin']).toBe(40);
    expect(c.never.points).toContain('firmware.before_command');
    expect(c.never.events).toContain('rmpUpdateRetries');
    for (const [, n] of Object.entries({ ...c.points, ...c.events, ...c.pairs })) expect(n as number).toBeLessThanOrEqual(40);
    for (const p of c.never.points) expect(c.points[p]).toBe(0);
    expect(Object.keys(c.pairs).length).toBeGreaterThan(0);
    for (const k of c.never.pairs) expect(c.pairs[k]).toBeUndefined();
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/coverage over 40 schedule\(s\)/);
    expect(text.stdout).toMatch(/never: .*firmware\.before_command/);
    expect(plain.stdout).not.toMatch(/coverage/);
  });
});
