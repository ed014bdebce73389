// The auditor: checks the invariants (docs/invariants.md) over the whole shared state, at a
// quiescent point (every loop parked, so no lock is legitimately held) and at teardown. The
// checks themselves live in audit/, one file per part of the state.

import { PG_FREE } from '../gmem/folio.js';
import { firstHostRmpFault } from '../gmem/filemap.js';
import type { Mem } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';
import { sumStats } from '../shm/stats.js';
import { INVARIANTS, type Invariant, type Violation } from './violations.js';
import { auditFolios, auditFreeLists, auditInodeLocks } from './audit/memory.js';
import { auditBindings, auditKasan } from './audit/objects.js';
import { auditHostPtes } from './audit/host.js';
import { auditLaunch } from './audit/launch.js';
import { auditPins } from './audit/pins.js';
import { auditVms } from './audit/sptes.js';
import { Views, emptyCounts, recorder } from './audit/views.js';

export interface AuditReport {
  violations: Violation[];
  counts: Record<Invariant, number>;
  findings: { punchHoleLeftovers: number; crossVmPrepare: number };
  checkedSptes: number;
}

/** Full check at a quiescent point. */
export function auditQuiescent(mem: Mem): AuditReport {
  const v = new Views(mem);
  const { add, counts, log } = recorder();
  auditKasan(mem, add);
  auditBindings(v, add);
  const tally = auditVms(v, add);
  auditHostPtes(v, add);
  auditPins(v, add);
  auditFolios(v, add);
  auditFreeLists(v, add);
  auditInodeLocks(v, add);
  const stats = sumStats(mem);
  if (stats.hostRmpFaults > 0)
    add({
      invariant: 'hostIsolation',
      by: 'auditor',
      detail: `the host wrote ${stats.hostRmpFaults} guest-assigned page(s) (RMP faults)${firstFault(mem)}`,
    });
  auditLaunch(mem, stats, add);
  // The VMM's own checks of what it read through a guest_memfd mapping (workload/ops/host.ts).
  if (stats.hostStaleReads > 0)
    add({
      invariant: 'staleData',
      by: 'auditor',
      detail: `${stats.hostStaleReads} host read(s) through a guest_memfd mapping saw bytes nobody wrote at that index`,
    });
  if (stats.hostLostWrites > 0)
    add({
      invariant: 'dataLost',
      by: 'auditor',
      detail: `${stats.hostLostWrites} host read(s) through a guest_memfd mapping lost the VMM's own write, with no discard since`,
    });
  // 7.4's conversion and PUNCH_HOLE, as the checker's counts in the kernel and the VMM saw them.
  if (stats.conversionsRefusedLruOnly > 0)
    add({
      invariant: 'liveness',
      by: 'auditor',
      detail: `${stats.conversionsRefusedLruOnly} KVM_SET_MEMORY_ATTRIBUTES2 refusal(s) (EAGAIN) of a folio whose only references beyond the page cache's were the per-CPU LRU batches' (kvm_gmem_has_outstanding_references drains them first: lru_add_drain_all)`,
    });
  if (stats.hostPrivateAccesses > 0)
    add({
      invariant: 'hostIsolation',
      by: 'auditor',
      detail: `${stats.hostPrivateAccesses} host access(es) through a guest_memfd mapping moved the bytes of a page private in its inode's attributes (kvm_gmem_fault_user_mapping, and the conversion's unmap_mapping_pages and TLB shootdown, keep the host off it)`,
    });
  if (stats.attributesLostOnPunch > 0)
    add({
      invariant: 'hostIsolation',
      by: 'auditor',
      detail: `${stats.attributesLostOnPunch} PUNCH_HOLE(s) changed the memory attributes of their range (kvm_gmem_punch_hole frees folios, the attributes stay: 1ae5be958ff7)`,
    });
  if (stats.staleTlbAccesses > 0)
    add({
      invariant: 'useAfterFree',
      by: 'auditor',
      detail: `${stats.staleTlbAccesses} guest access(es) went through a TLB entry whose SPTE was zapped without a TLB flush`,
    });
  return {
    violations: log.list,
    counts,
    findings: { punchHoleLeftovers: stats.punchHoleLeftovers, crossVmPrepare: tally.crossVm + stats['finding.crossVmPrepare'] },
    checkedSptes: tally.checked,
  };
}

/** Where the first RMP fault of a host write was, and whose page it hit (a LAUNCH_UPDATE's, while immutable). */
function firstFault(mem: Mem): string {
  const f = firstHostRmpFault(mem);
  if (f === null) return '';
  const owner = f.assigned
    ? `assigned to ASID ${f.asid} at gfn ${f.gfn}${f.immutable ? ', immutable (a LAUNCH_UPDATE in flight owns it)' : ''}`
    : 'hypervisor-owned by the time it was reported';
  return `; the first: ${f.site} on pfn ${f.pfn} (thread ${f.tid}), ${owner}`;
}

/** At teardown, after every guest_memfd was closed: everything is back where it started. */
export function auditTeardown(mem: Mem): AuditReport {
  const v = new Views(mem);
  const { add, counts, log } = recorder();
  const free = v.alloc.freeCount();
  if (free !== v.folios.nrPfns)
    add({ invariant: 'balance', by: 'auditor', detail: `${v.folios.nrPfns - free} pfn(s) not back in the allocator at teardown` });
  let notFree = 0;
  let assigned = 0;
  for (let pfn = 0; pfn < v.folios.nrPfns; pfn++) {
    if (!v.folios.test(pfn, PG_FREE) || v.folios.refcount(pfn) !== 0) notFree++;
    if (v.rmp.assigned(pfn)) assigned++;
  }
  if (notFree) add({ invariant: 'balance', by: 'auditor', detail: `${notFree} folio(s) not free with refcount 0 at teardown` });
  if (assigned)
    add({
      invariant: 'balance',
      by: 'auditor',
      detail: `${assigned} RMP entr${assigned === 1 ? 'y is' : 'ies are'} still guest-owned at teardown`,
    });
  auditKasan(mem, add);
  // Every slab is empty once every fd was closed: nothing leaked, nothing left half-released.
  const files = LIMITS.MAX_FILES - v.files.freeSlotCount();
  if (files) add({ invariant: 'balance', by: 'auditor', detail: `${files} gmem file(s) not released at teardown` });
  let inodes = 0;
  for (let ino = 0; ino < LIMITS.MAX_INODES; ino++) if (v.inodes.live(ino)) inodes++;
  if (inodes) add({ invariant: 'balance', by: 'auditor', detail: `${inodes} guest_memfd inode(s) not evicted at teardown` });
  for (let vm = 0; vm < v.vms.maxVms; vm++) {
    if (v.vms.live(vm))
      add({ invariant: 'balance', by: 'auditor', vm, detail: `vm ${vm} was not destroyed at teardown (a gmem file still pins it)` });
    const slots = v.memslots.recordsInUse(vm);
    if (slots) add({ invariant: 'balance', by: 'auditor', vm, detail: `${slots} memslot record(s) of vm ${vm} not freed at teardown` });
  }
  const stats = sumStats(mem);
  return {
    violations: log.list,
    counts,
    findings: { punchHoleLeftovers: stats.punchHoleLeftovers, crossVmPrepare: stats['finding.crossVmPrepare'] },
    checkedSptes: 0,
  };
}

/** Adds b's counts and violations into a. */
export function mergeAudit(a: AuditReport, b: AuditReport): AuditReport {
  const counts = emptyCounts();
  for (const i of INVARIANTS) counts[i] = a.counts[i] + b.counts[i];
  return {
    violations: [...a.violations, ...b.violations].slice(0, 50),
    counts,
    findings: {
      punchHoleLeftovers: Math.max(a.findings.punchHoleLeftovers, b.findings.punchHoleLeftovers),
      crossVmPrepare: Math.max(a.findings.crossVmPrepare, b.findings.crossVmPrepare),
    },
    checkedSptes: a.checkedSptes + b.checkedSptes,
  };
}
