// Group 'micro' (issue items 1 and 2), single thread, tinybench in batches:
//  - a guest access on an already-mapped private page (sw-protected: SPTE walk only; SNP: plus
//    the RMP check) vs a bare Atomics.load of the same guest word in the host buffer;
//  - a 4-byte read by the VMM through its host mapping of a page already mapped (6.18's mmap)
//    vs the same bare Atomics.load;
//  - an uncontended folio lock + unlock (Sync.mutexLock/mutexUnlock on the folio's lock word)
//    vs a bare compareExchange pair on that word.

import { LockClass } from '../src/shm/sync/classes.js';
import { Exit } from '../src/vcpu-workers/guest.js';
import { Sandbox, type Vcpu } from '../src/vmm/sandbox/sandbox.js';
import { hostMapping, hostRead } from './host.js';
import { type Ctx, type Sampled, consume, tinySync } from './measure.js';
import type { Row } from './table.js';

const MiB = 1 << 20;
/** Operations per timed call: the timer's own cost (~50 ns) is spread over the batch. */
const BATCH = 1000;

function mappedVcpu(sb: Sandbox, type: 'sw-protected' | 'snp'): Vcpu {
  const vm = sb.createVmSync({ type });
  const g = vm.createGuestMemfdSync({ size: MiB });
  vm.setUserMemoryRegion2Sync({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: g });
  vm.setMemoryAttributesSync({ address: 0, size: MiB, attributes: 'private' });
  if (type === 'snp') {
    vm.snpLaunchStartSync();
    vm.snpLaunchFinishSync();
  }
  const v = vm.createVcpuSync();
  let r = v.readSync(0, 4, { private: true });
  if (!r.ok && r.exit === 'vc') {
    v.cpu.pvalidate(0, true);
    r = v.readSync(0, 4, { private: true });
  }
  if (!r.ok) throw new Error(`micro: ${type} page did not map: ${r.exit}`);
  return v;
}

export async function runMicro(ctx: Ctx): Promise<Row[]> {
  const sb = Sandbox.createSync({ kernel: '7.0', memory: '4MiB', gpaSpace: '8MiB', userMemory: '1MiB', gmemSpace: '8MiB', maxVms: 3 });
  const sw = mappedVcpu(sb, 'sw-protected');
  const snp = mappedVcpu(sb, 'snp');
  const o = { batch: BATCH, timeMs: ctx.quick ? 60 : 700, warmupMs: ctx.quick ? 20 : 150 };
  const out = new Uint8Array(4);
  const rows: Row[] = [];
  const row = (name: string, s: Sampled, extra: Partial<Row> = {}): void => {
    rows.push({ group: 'micro', name, kind: 'time', ...s, note: `batches of ${BATCH}`, ...extra });
  };

  // The guest word both read: the first 4 bytes of the page backing gpa 0 of the sw VM.
  const pfn = sw.vm.backingPfn(0);
  const host32 = new Int32Array(sb.mem.buffers.host);
  const word = (pfn * 4096) / 4;
  ctx.log('micro: Atomics.load');
  row(
    'atomics.load',
    tinySync(
      'atomics.load',
      () => {
        let s = 0;
        for (let i = 0; i < BATCH; i++) s += Atomics.load(host32, word);
        consume(s);
      },
      o,
    ),
  );

  // The plain rows are the hardware's path (a TLB hit); '.audited' adds the auditor's check of
  // each hit against the SPTE, as stress and explore runs do.
  for (const [name, v, audit] of [
    ['access.mapped.sw', sw, false],
    ['access.mapped.snp', snp, false],
    ['access.mapped.sw.audited', sw, true],
    ['access.mapped.snp.audited', snp, true],
  ] as const) {
    ctx.log(`micro: ${name}`);
    const cpu = v.cpu;
    cpu.auditTlb = audit;
    if (cpu.access(0, 4, true, out, null) !== Exit.NONE) throw new Error(`${name}: access exited`);
    // A running guest stays in guest mode between accesses, as the workloads do: each access
    // then pays its flush check, pause point, SPTE load (and RMP check), not a guest entry.
    cpu.vcpu.enterGuest();
    row(
      name,
      tinySync(
        name,
        () => {
          for (let i = 0; i < BATCH; i++) cpu.access(0, 4, true, out, null);
        },
        o,
      ),
      audit ? { baseline: 'atomics.load' } : { baseline: 'atomics.load', target: { op: '<=', ratio: 2 } },
    );
    cpu.vcpu.exitGuest();
  }

  // The same 4 bytes read by the VMM through its mapping of a default VM's file (6.18 on).
  ctx.log('micro: host.access.mapped');
  const map = hostMapping(sb, MiB);
  hostRead(sb, map, 0, out);
  const faults = sb.stats().hostFaults;
  row(
    'host.access.mapped',
    tinySync(
      'host.access.mapped',
      () => {
        for (let i = 0; i < BATCH; i++) hostRead(sb, map, 0, out);
      },
      o,
    ),
    { baseline: 'atomics.load' },
  );
  if (sb.stats().hostFaults !== faults) throw new Error('host.access.mapped: a timed read faulted');

  // The folio lock of that same page, free (nobody else runs).
  const w = sb.mem.w;
  const sync = sb.k.sync;
  const lockWord = sb.k.g.folios.lockWord(pfn);
  const me = sync.tid + 1;
  if (Atomics.load(w, lockWord) !== 0) throw new Error('micro: folio lock is held');
  ctx.log('micro: compareExchange pair');
  row(
    'cas.pair',
    tinySync(
      'cas.pair',
      () => {
        for (let i = 0; i < BATCH; i++) {
          Atomics.compareExchange(w, lockWord, 0, me);
          Atomics.compareExchange(w, lockWord, me, 0);
        }
      },
      o,
    ),
  );
  ctx.log('micro: folio lock/unlock');
  row(
    'folio.lock+unlock',
    tinySync(
      'folio.lock+unlock',
      () => {
        for (let i = 0; i < BATCH; i++) {
          sync.mutexLock(lockWord, LockClass.FOLIO);
          sync.mutexUnlock(lockWord);
        }
      },
      o,
    ),
    { baseline: 'cas.pair' },
  );
  await sb.close();
  return rows;
}
