// arch/x86/virt/svm/sev.c: the host kernel's RMP helpers, run on the thread that calls them (the
// vCPU on a fault through sev_gmem_prepare, the VMM on free or populate). They execute RMPUPDATE
// through firmware/rmp.ts's API only, and never touch the firmware's lock or mailbox.

import { Errno } from '../shm/errno.js';
import type { Mem } from '../shm/layout.js';
import { C, threadStats } from '../shm/stats.js';
import type { Sync } from '../shm/sync/sync.js';
import { type HostRmpOps, type RmpEntry, RmpupdateRet } from '../kvm/psp.js';
import { RMP_ASSIGNED, RMP_IMMUTABLE, RMP_NOTE_RECLAIMED, Rmp } from './rmp.js';
import { FwCmd, type SnpFirmwareCore } from './snp.js';
import type { Gfn, Pfn } from '../shm/frames.js';

export class HostRmp implements HostRmpOps {
  readonly rmp: Rmp;
  private readonly stats: Float64Array;

  constructor(
    mem: Mem,
    private readonly sync: Sync,
    /** Only for the fault-injection counters (FwCmd.RMPUPDATE), which live with the firmware's. */
    private readonly core: SnpFirmwareCore,
  ) {
    this.rmp = new Rmp(mem, sync);
    this.stats = threadStats(mem, sync.tid);
  }

  // snp_lookup_rmpentry
  rmpAssigned(pfn: Pfn): boolean {
    return this.rmp.assigned(pfn);
  }
  rmpLookup(pfn: Pfn): RmpEntry {
    return this.rmp.lookup(pfn);
  }

  // rmpupdate(): loops while the instruction fails with FAIL_OVERLAP (another CPU updating the
  // entry); any other failure is -EFAULT. Each retry waits, through Sync, for the other update
  // to finish, where the kernel spins on the instruction.
  private rmpupdate(pfn: number, flags: number, asid: number, gfn: number, note = 0): number {
    for (;;) {
      const ret = this.rmp.rmpupdate(pfn, flags, asid, gfn, this.sync, note);
      if (ret === RmpupdateRet.SUCCESS) return 0;
      if (ret !== RmpupdateRet.FAIL_OVERLAP) return -Errno.EFAULT;
      this.stats[C.rmpUpdateRetries]++;
      this.rmp.waitWhileUpdating(pfn, this.sync);
    }
  }

  // rmp_make_private. An injected failure is a failing RMPUPDATE: -EFAULT, as rmpupdate() returns.
  rmpMakePrivate(pfn: Pfn, gfn: Gfn, asid: number, immutable: boolean): number {
    if (this.core.injected(FwCmd.RMPUPDATE)) return -Errno.EFAULT;
    if (asid <= 0) return -Errno.EFAULT;
    return this.rmpupdate(pfn, RMP_ASSIGNED | (immutable ? RMP_IMMUTABLE : 0), asid, gfn);
  }

  // rmp_make_shared; `reclaim`: snp_page_reclaim's, noted in the entry for reports.
  rmpMakeShared(pfn: Pfn, reclaim = false): number {
    return this.rmpupdate(pfn, 0, 0, 0, reclaim ? RMP_NOTE_RECLAIMED : 0);
  }
}
