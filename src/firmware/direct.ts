// The firmware called in process: each command runs on the caller's thread under the firmware
// lock, so commands stay serialised as on the real secure processor. The firmware worker serves
// the same SnpFirmwareCore through its mailbox instead.

import type { RmpEntry, SnpPlatform } from '../kvm/psp.js';
import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { C, LockClass, threadStats } from '../shm/stats.js';
import type { Sync } from '../shm/sync.js';
import { SnpFirmwareCore } from './snp.js';

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
  private readonly lock: number;
  private readonly stats: Float64Array;

  constructor(
    mem: Mem,
    private readonly sync: Sync,
  ) {
    this.core = new SnpFirmwareCore(mem);
    this.lock = regionBase(mem, REGION);
    this.stats = threadStats(mem, sync.tid);
  }

  private run<T>(fn: () => T): T {
    this.stats[C.firmwareCommands]++;
    this.sync.mutexLock(this.lock, LockClass.OTHER);
    try {
      return fn();
    } finally {
      this.sync.mutexUnlock(this.lock);
    }
  }

  rmpAssigned(pfn: number): boolean {
    return this.core.rmp.assigned(pfn);
  }
  rmpLookup(pfn: number): RmpEntry {
    return this.core.rmp.lookup(pfn);
  }
  rmpMakePrivate(pfn: number, gfn: number, asid: number, immutable: boolean): number {
    return this.run(() => this.core.rmpMakePrivate(pfn, gfn, asid, immutable));
  }
  rmpMakeShared(pfn: number): number {
    return this.run(() => this.core.rmpMakeShared(pfn));
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
  pvalidate(asid: number, pfn: number, gfn: number, validate: boolean): number {
    return this.run(() => this.core.pvalidate(asid, pfn, gfn, validate));
  }
}
