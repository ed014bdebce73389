// The firmware called in process: each PSP command runs on the caller's thread under the firmware
// lock, so commands stay serialised as on the real secure processor. The firmware worker serves
// the same SnpFirmwareCore through its mailbox instead. RMPUPDATE runs on the calling thread
// without that lock (host-rmp.ts), as the CPU instruction it is.

import type { RmpEntry, SnpPlatform } from '../kvm/psp.js';
import { HostRmp } from './host-rmp.js';
import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { C, threadStats } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import type { Sync } from '../shm/sync/sync.js';
import { SnpFirmwareCore } from './snp.js';
import type { Gfn, Pfn } from '../shm/frames.js';

const REGION = 'firmware_lock';

export function declareFirmwareLock(lb: LayoutBuilder): void {
  lb.add(REGION, 1, 'firmware/direct.ts');
}

/** The in-process firmware's command lock, for reports. */
export function firmwareLockWord(mem: Mem): number {
  return regionBase(mem, REGION);
}

export class DirectPlatform implements SnpPlatform {
  readonly core: SnpFirmwareCore;
  readonly cpu: HostRmp;
  private readonly lock: number;
  private readonly stats: Float64Array;

  constructor(
    mem: Mem,
    private readonly sync: Sync,
  ) {
    this.core = new SnpFirmwareCore(mem, sync);
    this.cpu = new HostRmp(mem, sync, this.core);
    this.lock = regionBase(mem, REGION);
    this.stats = threadStats(mem, sync.tid);
  }

  /** A PSP command: counted, and serialised by the firmware lock. */
  private run<T>(fn: () => T): T {
    this.stats[C.firmwareCommands]++;
    this.sync.mutexLock(this.lock, LockClass.FIRMWARE);
    try {
      return fn();
    } finally {
      this.sync.mutexUnlock(this.lock);
    }
  }

  rmpAssigned(pfn: Pfn): boolean {
    return this.cpu.rmpAssigned(pfn);
  }
  rmpLookup(pfn: Pfn): RmpEntry {
    return this.cpu.rmpLookup(pfn);
  }
  rmpMakePrivate(pfn: Pfn, gfn: Gfn, asid: number, immutable: boolean): number {
    return this.cpu.rmpMakePrivate(pfn, gfn, asid, immutable);
  }
  rmpMakeShared(pfn: Pfn, reclaim = false): number {
    return this.cpu.rmpMakeShared(pfn, reclaim);
  }
  launchStart(asid: number): number {
    return this.run(() => this.core.launchStart(asid));
  }
  launchUpdate(asid: number, pfn: number, gfn: number, type: number): number {
    return this.run(() => this.core.launchUpdate(asid, pfn, gfn, type));
  }
  launchFinish(asid: number): number {
    return this.run(() => this.core.launchFinish(asid));
  }
  launchDigest(asid: number): Uint8Array {
    return this.core.launchDigest(asid);
  }
}
