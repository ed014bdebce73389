// The threaded runtime end to end: ioctls on the VMM worker, a guest access on a vCPU worker, and
// the SNP launch commands through the firmware mailbox; one private fault runs the arch prepare
// (sev_gmem_prepare) once, and the page reads zeros after PVALIDATE.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Runtime, workerFile } from '../../src/vmm/sandbox/runtime.js';
import { WORKER_BUNDLES, WORKER_MODULES_ENV } from '../../src/vmm/sandbox/worker-entries.js';
import { root } from '../helpers/cli-helpers.js';

let rt: Runtime | null = null;
afterEach(async () => {
  await rt?.shutdown();
  rt = null;
});

describe('runtime', () => {
  it('runs ioctls on the VMM worker and a guest access on a vCPU worker through the firmware mailbox', async () => {
    rt = await Runtime.start({ sandbox: { policy: 'prepare-on-fault', memory: '8MiB' } });
    await rt.createVms([{ name: 'a', type: 'snp', vcpus: 1 }]);
    const v = rt.vmm.api;
    expect(await v.exec({ op: 'create_guest_memfd', vm: 'a', as: 'g', size: 1 << 20 })).toMatchObject({ result: 'ok' });
    expect(
      await v.exec({
        op: 'set_user_memory_region2',
        vm: 'a',
        slot: 0,
        flags: ['guest_memfd'],
        guest_phys_addr: 0,
        memory_size: 1 << 20,
        guest_memfd: 'g',
      }),
    ).toEqual({ result: 'ok' });
    expect(await v.exec({ op: 'set_memory_attributes', vm: 'a', address: 0, size: 1 << 20, attributes: 'private' })).toEqual({
      result: 'ok',
    });
    expect(await v.exec({ op: 'snp_launch_start', vm: 'a' })).toEqual({ result: 'ok' });
    expect((await v.exec({ op: 'snp_launch_finish', vm: 'a' })).result).toBe('ok');
    const c = rt.vcpu('a', 0);
    expect(await c.api.exec({ op: 'guest_read', gpa: 0, len: 4 })).toEqual({ result: 'vc', exit: 'vc' });
    expect(await c.api.exec({ op: 'pvalidate', gpa: 0 })).toEqual({ result: 'ok', value: 0 });
    expect(await c.api.exec({ op: 'guest_read', gpa: 0, len: 4 })).toEqual({ result: 'ok', value: '00000000' });
    expect(rt.stats().archPrepareCalls).toBe(1);
  });
});

describe('worker entries', () => {
  it('run as the bundles npm run build makes, or as the modules tsc wrote with GMEM_WORKER_MODULES=1', () => {
    expect(workerFile('vcpu-workers/worker.js')).toBe(join(root, 'dist/workers/vcpu.js'));
    expect(workerFile('vmm/sandbox/vmm-worker.js')).toBe(join(root, 'dist/workers/vmm.js'));
    expect(workerFile('firmware/worker.js')).toBe(join(root, 'dist/workers/firmware.js'));
    // A worker without a bundle (a sweep job) runs its module.
    expect(workerFile('vmm/sweep/worker.js')).toBe(join(root, 'dist/src/vmm/sweep/worker.js'));
    for (const f of Object.values(WORKER_BUNDLES)) expect(existsSync(join(root, 'dist', f))).toBe(true);
    process.env[WORKER_MODULES_ENV] = '1';
    try {
      expect(workerFile('vcpu-workers/worker.js')).toBe(join(root, 'dist/src/vcpu-workers/worker.js'));
    } finally {
      delete process.env[WORKER_MODULES_ENV];
    }
  });
});
