// Invariants that hold at every instant, checked by the running actor at each scheduling point
// of a controlled run (where one actor runs at a time, so the state it reads is not moving): a
// window that opens and closes inside one schedule, and is gone by the end-of-run audit, is
// caught where it opens. Owns the 'online_audit' region: the first reports of a run.

import { Rmp } from '../firmware/rmp.js';
import { GmemAttributes, KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../gmem/attributes_table.js';
import { Folios, PG_FREE, PG_UPTODATE } from '../gmem/folio.js';
import { GupPins } from '../gmem/pin_table.js';
import { gmemAttributesKept } from '../gmem/params.js';
import { Inodes } from '../gmem/inode.js';
import { HostMappings } from '../gmem/vma.js';
import type { KvmCtx } from '../kvm/ctx.js';
import { GMEM_SHARED_FRAME, Sptes, spteFrame, sptePrivate } from '../kvm/spte.js';
import { Vms } from '../kvm/vm.js';
import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { takeLockdepReports } from '../shm/sync/lockdep.js';
import type { Violation } from './violations.js';
import { pinnedPrivate, pinnedPrivateDetail } from './audit/pins.js';

const REGION = 'online_audit';
const H_COUNT = 0;
const HEADER = 16;
const KEEP = 8;
const REP = 8;
/** Report kinds. */
const SPTE_MAPS_FREE = 1;
const FREE_PFN_ASSIGNED = 2;
/** A host PTE maps a free pfn, a page the file no longer holds there, an assigned one, one never cleared. */
const PTE_MAPS_FREE = 3;
const PTE_MAPS_TRUNCATED = 4;
const PTE_MAPS_ASSIGNED = 5;
const PTE_MAPS_UNCLEARED = 6;
/** 7.4: a host PTE maps an index private in its inode's attributes; a pinned page is private. */
const PTE_MAPS_PRIVATE = 7;
const PIN_ON_PRIVATE = 8;

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
  const vmas = new HostMappings(mem);
  const inodes = new Inodes(mem);
  const gmemAttrs = new GmemAttributes(mem, inodes);
  const attrsKept = gmemAttributesKept(mem);
  const pins = new GupPins(mem);
  const pinViews = { mem, folios, inodes, gmemAttrs };
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
  /** A present host PTE: reported if wrong, with the checks cheap enough for every scheduling point. */
  const visitPte = (_map: number, _k: number, ino: number, index: number, pfn: number): boolean => {
    let kind = 0;
    if (folios.test(pfn, PG_FREE)) kind = PTE_MAPS_FREE;
    else if (inodes.peek(ino, index) !== pfn) kind = PTE_MAPS_TRUNCATED;
    else if (rmp.assigned(pfn)) kind = PTE_MAPS_ASSIGNED;
    else if (!folios.test(pfn, PG_UPTODATE)) kind = PTE_MAPS_UNCLEARED;
    else if (attrsKept && gmemAttrs.get(ino, index) & KVM_MEMORY_ATTRIBUTE_PRIVATE) kind = PTE_MAPS_PRIVATE;
    if (kind !== 0) report(kind, ino, index, pfn);
    return kind !== 0;
  };
  return () => {
    // One report per run is enough to fail it; the rest of the run would only repeat it.
    if (Atomics.load(w, base + H_COUNT) !== 0) return;
    // Run at every scheduling point, by the one actor running: the scans skip the empty entries
    // (most of them) with plain reads, where a lookup each cost a schedule an eighth of its time.
    for (let vm = 0; vm < vms.maxVms; vm++) {
      if (!vms.live(vm)) continue;
      for (let gfn = sptes.nextPresent(vm, 0); gfn >= 0; gfn = sptes.nextPresent(vm, gfn + 1)) {
        const pfn = guestMemfdPfn(sptes.get(vm, gfn));
        if (pfn >= 0 && folios.test(pfn, PG_FREE)) return report(SPTE_MAPS_FREE, vm, gfn, pfn);
      }
    }
    for (let pfn = rmp.nextAssigned(0); pfn >= 0; pfn = rmp.nextAssigned(pfn + 1)) {
      if (folios.test(pfn, PG_FREE)) return report(FREE_PFN_ASSIGNED, -1, -1, pfn);
    }
    // 6.18's host mappings: nothing to scan unless the VMM mapped a guest_memfd.
    if (vmas.scanPtes(visitPte)) return;
    if (!attrsKept) return;
    const p = pinnedPrivate(pinViews, pins);
    if (p !== null) report(PIN_ON_PRIVATE, p.ino, p.index, p.pfn);
  };
}

/** The guest_memfd pfn an SPTE maps (a private one, or a GMEM_ONLY slot's shared one), or -1 for VMM memory. */
function guestMemfdPfn(spte: number): number {
  if (sptePrivate(spte)) return spteFrame(spte);
  const frame = spteFrame(spte);
  return frame >= GMEM_SHARED_FRAME ? frame - GMEM_SHARED_FRAME : -1;
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
    out.push(describeReport(kind, vm, gfn, pfn, `thread ${tid} (online)`));
  }
  out.push(...takeLockOrderReports(mem));
  return out;
}

/** One report as a violation; a host PTE's report carries its inode and index where an SPTE's has its VM and gfn. */
function describeReport(kind: number, vm: number, gfn: number, pfn: number, by: string): Violation {
  const at = 'at a scheduling point,';
  const pte = `the host PTE for index ${gfn} of guest_memfd inode ${vm}`;
  switch (kind) {
    case SPTE_MAPS_FREE:
      return {
        invariant: 'useAfterFree',
        by,
        vm,
        gfn,
        pfn,
        detail: `${at} vm ${vm}'s SPTE for gfn ${gfn} maps pfn ${pfn}, which is on the free list`,
      };
    case FREE_PFN_ASSIGNED:
      return { invariant: 'hostIsolation', by, pfn, detail: `${at} free pfn ${pfn} is still guest-owned in the RMP` };
    case PTE_MAPS_FREE:
      return { invariant: 'useAfterFree', by, pfn, detail: `${at} ${pte} maps pfn ${pfn}, which is on the free list` };
    case PTE_MAPS_TRUNCATED:
      return { invariant: 'useAfterFree', by, pfn, detail: `${at} ${pte} maps pfn ${pfn}, which the file no longer holds there` };
    case PTE_MAPS_PRIVATE:
      return {
        invariant: 'hostIsolation',
        by,
        pfn,
        detail: `${at} ${pte} maps pfn ${pfn}, private in the inode's attributes (kvm_gmem_fault_user_mapping checks them under the invalidate lock)`,
      };
    case PIN_ON_PRIVATE:
      return { invariant: 'hostIsolation', by, pfn, detail: `${at} ${pinnedPrivateDetail({ pfn, ino: vm, index: gfn })}` };
    case PTE_MAPS_ASSIGNED:
      return { invariant: 'hostIsolation', by, pfn, detail: `${at} ${pte} maps pfn ${pfn}, which the RMP assigns to a guest` };
    default:
      return { invariant: 'staleData', by, pfn, detail: `${at} ${pte} maps pfn ${pfn}, which was never cleared (not up to date)` };
  }
}
