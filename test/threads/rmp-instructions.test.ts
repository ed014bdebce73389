// RMPUPDATE and PVALIDATE are CPU instructions on the calling thread, atomic per RMP entry:
// another CPU's RMPUPDATE of the same entry meanwhile fails with FAIL_OVERLAP, which rmpupdate()
// (arch/x86/virt/svm/sev.c) retries; PSP commands alone go to the firmware worker, so no fault
// (sev_gmem_prepare) and no free (sev_gmem_invalidate) waits for it.

import { Worker } from 'node:worker_threads';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { Rmp } from '../../src/firmware/rmp.js';
import { RmpupdateRet } from '../../src/kvm/psp.js';
import { pointId } from '../../src/shm/points.js';
import { C, threadStats } from '../../src/shm/stats.js';
import { SyncControl } from '../../src/shm/sync/control.js';
import { Sandbox } from '../../src/vmm/sandbox/sandbox.js';
import { PAGE, expectOk, setupVm, shutdownAll, startRuntime } from '../helpers/runtime-helpers.js';

afterEach(shutdownAll);

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OPEN_URL = pathToFileURL(`${ROOT}/dist/src/firmware/open.js`).href;
const RMP_URL = pathToFileURL(`${ROOT}/dist/src/firmware/rmp.js`).href;

/**
 * A bare host CPU thread on the sandbox's shared memory (the built code): runs RMPUPDATEs through
 * the kernel's rmp_make_private / rmp_make_shared and reports what it saw. Every execution of the
 * RMPUPDATE instruction (Rmp.rmpupdate, the module the kernel's helpers use) is counted, with the
 * transient failures (FAIL_OVERLAP) among them, without changing what it does.
 */
const CPU_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  const { openKernel } = await import(workerData.openUrl);
  const { Rmp } = await import(workerData.rmpUrl);
  const k = openKernel({ buffers: workerData.buffers, kernel: 'b85524314a', tid: workerData.tid, platform: 'direct' });
  const rmp = new Rmp(k.mem);
  const insn = { executed: 0, overlaps: 0 };
  const rmpupdate = Rmp.prototype.rmpupdate;
  Rmp.prototype.rmpupdate = function (...a) {
    const ret = rmpupdate.apply(this, a);
    insn.executed++;
    if (ret === workerData.failOverlap) insn.overlaps++;
    return ret;
  };
  parentPort.on('message', (m) => {
    if (m.op === 'make_private') {
      parentPort.postMessage({ ret: k.psp.rmpMakePrivate(m.pfn, m.gfn, m.asid, false) });
    } else if (m.op === 'hammer') {
      // Alternates make_private (own ASID, own gfn parity) and make_shared on one entry, checking
      // every entry it reads: an owner always comes with a GPA that owner wrote.
      let bad = 0, fails = 0, seen = 0;
      insn.executed = 0;
      insn.overlaps = 0;
      for (let i = 0; i < m.n; i++) {
        const gfn = ((i % 1000) * 2) + (m.asid - 1);
        if (k.psp.rmpMakePrivate(m.pfn, gfn, m.asid, false) !== 0) fails++;
        const e = rmp.lookup(m.pfn);
        if (e.assigned) { seen++; if ((e.gfn % 2) !== (e.asid - 1) || e.validated || e.immutable) bad++; }
        else if (e.asid !== 0 || e.gfn !== 0) bad++;
        if (k.psp.rmpMakeShared(m.pfn) !== 0) fails++;
      }
      parentPort.postMessage({ bad, fails, seen, ...insn });
    }
  });
  parentPort.postMessage('ready');
})();
`;

interface CpuThread {
  w: Worker;
  tid: number;
  send(m: object): Promise<Record<string, number>>;
}

const threads: Worker[] = [];
afterEach(async () => {
  await Promise.all(threads.splice(0).map((w) => w.terminate()));
});

async function cpuThread(sb: Sandbox, tid: number): Promise<CpuThread> {
  const w = new Worker(CPU_WORKER, {
    eval: true,
    workerData: { buffers: sb.descriptor.buffers, tid, openUrl: OPEN_URL, rmpUrl: RMP_URL, failOverlap: RmpupdateRet.FAIL_OVERLAP },
  });
  threads.push(w);
  await new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
  });
  return {
    w,
    tid,
    send: (m) =>
      new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
        w.postMessage(m);
      }),
  };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('RMPUPDATE on the calling thread, atomic per entry', () => {
  it('two threads update one entry at once: the second fails transiently (FAIL_OVERLAP), waits, retries once and wins; no firmware command', async () => {
    const sb = await Sandbox.create({ policy: 'prepare-on-fault', memory: '4MiB' });
    const [a, b] = [await cpuThread(sb, 3), await cpuThread(sb, 4)];
    const ctl = new SyncControl(sb.mem);
    const rmp = new Rmp(sb.mem);
    const pfn = 7;
    // A is held inside its RMPUPDATE: it has read the entry and not written it yet.
    const slot = ctl.armPause(pointId('rmp.rmpupdate'), a.tid);
    const ra = a.send({ op: 'make_private', pfn, gfn: 0x10, asid: 1 });
    expect(await ctl.whenHeld(slot, 5000)).toBe(a.tid);
    const rb = b.send({ op: 'make_private', pfn, gfn: 0x21, asid: 2 });
    // B's RMPUPDATE failed (FAIL_OVERLAP) and rmpupdate() waits on the entry to retry.
    const statsB = threadStats(sb.mem, b.tid);
    await until(() => statsB[C.rmpUpdateRetries] === 1 && ctl.waitingOn(b.tid) !== 0, 'B to wait on the RMP entry');
    expect(rmp.lookup(pfn)).toMatchObject({ assigned: false, asid: 0, gfn: 0 });
    ctl.release(slot);
    expect(await ra).toEqual({ ret: 0 });
    expect(await rb).toEqual({ ret: 0 });
    // B's update came last, and the entry holds B's owner with B's GPA, nothing of A's.
    expect(rmp.lookup(pfn)).toEqual({ assigned: true, asid: 2, gfn: 0x21, validated: false, immutable: false, pageSize: 0 });
    expect(statsB[C.rmpUpdateRetries]).toBe(1);
    expect(threadStats(sb.mem, a.tid)[C.rmpUpdateRetries]).toBe(0);
    expect(sb.stats().firmwareCommands).toBe(0);
  });

  it('two threads hammering one entry: every update succeeds, every entry read is one whole update, the end state is hypervisor-owned', async () => {
    const sb = await Sandbox.create({ policy: 'prepare-on-fault', memory: '4MiB' });
    const [a, b] = [await cpuThread(sb, 3), await cpuThread(sb, 4)];
    const pfn = 3;
    const n = 20_000;
    const [ra, rb] = await Promise.all([a.send({ op: 'hammer', pfn, asid: 1, n }), b.send({ op: 'hammer', pfn, asid: 2, n })]);
    expect(ra).toMatchObject({ bad: 0, fails: 0 });
    expect(rb).toMatchObject({ bad: 0, fails: 0 });
    // How often the two met depends on the machine; what rmpupdate() does at each meeting does not:
    // every FAIL_OVERLAP is counted once as a retry and executed again, and every other execution
    // is one of the 2n updates, which all succeed.
    for (const [t, r] of [
      [a, ra],
      [b, rb],
    ] as const) {
      expect(threadStats(sb.mem, t.tid)[C.rmpUpdateRetries], `thread ${t.tid}`).toBe(r.overlaps);
      expect(r.executed, `thread ${t.tid}`).toBe(2 * n + r.overlaps);
    }
    expect(sb.stats().rmpUpdateRetries).toBe(ra.overlaps + rb.overlaps);
    expect(new Rmp(sb.mem).lookup(pfn)).toMatchObject({ assigned: false, asid: 0, gfn: 0, validated: false });
    expect(sb.stats().firmwareCommands).toBe(0);
  });
});

describe('no fault waits for the firmware worker', () => {
  it('while the firmware worker is held inside a command, a vCPU faults, PVALIDATEs and reads, and the VMM-side free runs later; firmwareCommands counts PSP commands only', async () => {
    const rt = await startRuntime('prepare-on-fault-own-vm');
    await setupVm(rt, 'snp', 1);
    // LAUNCH_START and LAUNCH_FINISH of VM 'a': the only firmware commands so far.
    expect(rt.stats().firmwareCommands).toBe(2);
    await rt.createVms([{ name: 'b', type: 'snp', vcpus: 0 }]);
    // Hold the firmware worker inside VM b's LAUNCH_START: the mailbox serves nothing else now.
    const slot = rt.control.armPause(pointId('firmware.before_command'));
    const held = rt.vmm.api.exec({ op: 'snp_launch_start', vm: 'b' });
    await rt.control.whenHeld(slot, 5000);
    const before = rt.stats();
    const c = rt.vcpu('a', 0);
    const gpa = 0x7000;
    expect(await rt.call(c, () => c.api.exec({ op: 'guest_read', gpa, len: 4 }))).toEqual({ result: 'vc', exit: 'vc' });
    expect(await rt.call(c, () => c.api.exec({ op: 'pvalidate', gpa }))).toEqual({ result: 'ok', value: 0 });
    expect(await rt.call(c, () => c.api.exec({ op: 'guest_read', gpa, len: 4 }))).toEqual({ result: 'ok', value: '00000000' });
    const mid = rt.stats();
    expect(mid.faults - before.faults).toBe(1);
    expect(mid.rmpUpdates - before.rmpUpdates).toBe(1);
    expect(mid.pvalidates - before.pvalidates).toBe(1);
    expect(mid.firmwareCommands).toBe(before.firmwareCommands);
    expect(rt.control.pauseState(slot)).toBe('held');
    rt.control.release(slot);
    expectOk(await held);
    expect(rt.stats().firmwareCommands).toBe(3);
    // The free after PUNCH_HOLE makes the page shared again with RMPUPDATE on the VMM's thread.
    const f0 = rt.stats();
    expectOk(await rt.vmm.api.exec({ op: 'fallocate', fd: 'g', mode: ['keep_size', 'punch_hole'], offset: gpa, len: PAGE }));
    const f1 = rt.stats();
    expect(f1.rmpUpdates - f0.rmpUpdates).toBe(1);
    expect(f1.firmwareCommands).toBe(f0.firmwareCommands);
  });
});
