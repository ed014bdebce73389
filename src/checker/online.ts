// Invariants that hold at every instant, checked by the running actor at each scheduling point
// of a controlled run (where one actor runs at a time, so the state it reads is not moving): a
// window that opens and closes inside one schedule, and is gone by the end-of-run audit, is
// caught where it opens. Owns the 'online_audit' region: the first reports of a run.

import { Rmp } from '../firmware/rmp.js';
import { Folios, PG_FREE } from '../gmem/folio.js';
import type { KvmCtx } from '../kvm/ctx.js';
import { Sptes, spteFrame, sptePrivate } from '../kvm/spte.js';
import { Vms } from '../kvm/vm.js';
import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { takeLockdepReports } from '../shm/sync/lockdep.js';
import type { Violation } from './violations.js';

const REGION = 'online_audit';
const H_COUNT = 0;
const HEADER = 16;
const KEEP = 8;
const REP = 8;
/** Report kinds. */
const SPTE_MAPS_FREE = 1;
const FREE_PFN_ASSIGNED = 2;

export function declareOnlineAudit(lb: LayoutBuilder): void {
  lb.add(REGION, HEADER + KEEP * REP, 'checker/online.ts');
}

/** The checker one actor runs at its scheduling points (a Sync step hook). */
export function onlineChecker(k: KvmCtx): () => void {
  const mem = k.mem;
  const w = mem.w;
  const base = regionBase(mem, REGION);
  const sptes = new Sptes(mem);
  const folios = new Folios(mem);
  const rmp = new Rmp(mem);
  const vms = new Vms(mem);
  const tid = k.sync.tid;
  const report = (kind: number, vm: number, gfn: number, pfn: number): void => {
    const n = Atomics.add(w, base + H_COUNT, 1);
    if (n >= KEEP) return;
    const r = base + HEADER + n * REP;
    w[r] = kind;
    w[r + 1] = vm;
    w[r + 2] = gfn;
    w[r + 3] = pfn;
    w[r + 4] = tid;
  };
  return () => {
    // One report per run is enough to fail it; the rest of the run would only repeat it.
    if (Atomics.load(w, base + H_COUNT) !== 0) return;
    // Run at every scheduling point, by the one actor running: the scans skip the empty entries
    // (most of them) with plain reads, where a lookup each cost a schedule an eighth of its time.
    for (let vm = 0; vm < vms.maxVms; vm++) {
      if (!vms.live(vm)) continue;
      for (let gfn = sptes.nextPresent(vm, 0); gfn >= 0; gfn = sptes.nextPresent(vm, gfn + 1)) {
        const spte = sptes.get(vm, gfn);
        if (sptePrivate(spte) && folios.test(spteFrame(spte), PG_FREE)) return report(SPTE_MAPS_FREE, vm, gfn, spteFrame(spte));
      }
    }
    for (let pfn = rmp.nextAssigned(0); pfn >= 0; pfn = rmp.nextAssigned(pfn + 1)) {
      if (folios.test(pfn, PG_FREE)) return report(FREE_PFN_ASSIGNED, -1, -1, pfn);
    }
  };
}

/** Lockdep's lock order inversions since the last call, as violations; clears them. */
export function takeLockOrderReports(mem: Mem): Violation[] {
  return takeLockdepReports(mem).map((r) => ({ invariant: 'lockOrder', by: `thread ${r.tid} (lockdep)`, detail: r.text }));
}

/** The reports of the run so far (lockdep's included), as violations; clears them for the next run. */
export function takeOnlineReports(mem: Mem): Violation[] {
  const w = mem.w;
  const base = regionBase(mem, REGION);
  const n = Math.min(Atomics.exchange(w, base + H_COUNT, 0), KEEP);
  const out: Violation[] = [];
  for (let i = 0; i < n; i++) {
    const r = base + HEADER + i * REP;
    const [kind, vm, gfn, pfn, tid] = [w[r], w[r + 1], w[r + 2], w[r + 3], w[r + 4]];
    out.push(
      kind === SPTE_MAPS_FREE
        ? {
            invariant: 'useAfterFree',
            by: `thread ${tid} (online)`,
            vm,
            gfn,
            pfn,
            detail: `at a scheduling point, vm ${vm}'s SPTE for gfn ${gfn} maps pfn ${pfn}, which is on the free list`,
          }
        : {
            invariant: 'hostIsolation',
            by: `thread ${tid} (online)`,
            pfn,
            detail: `at a scheduling point, free pfn ${pfn} is still guest-owned in the RMP`,
          },
    );
  }
  out.push(...takeLockOrderReports(mem));
  return out;
}
