// The firmware's command mailbox: the client side is an SnpPlatform any thread can use; the
// server side dispatches to SnpFirmwareCore on the firmware worker's thread. Only PSP commands go
// through it: RMP reads stay plain shared-memory reads, as snp_lookup_rmpentry is, and RMPUPDATE
// runs on the calling thread (host-rmp.ts), so no fault waits for the firmware worker.

import type { RmpEntry, SnpPlatform } from '../kvm/psp.js';
import { HostRmp } from './host-rmp.js';
import { LayoutBuilder, type Mem } from '../shm/layout.js';
import { Mailbox, type MailboxTuning, declareMailbox } from '../shm/mailbox.js';
import { P } from '../shm/points.js';
import { C, threadStats } from '../shm/stats.js';
import { TraceKind, Tracer } from '../shm/trace.js';
import type { Sync } from '../shm/sync/sync.js';
import { SnpFirmwareCore } from './snp.js';
import type { Gfn, Pfn } from '../shm/frames.js';

export const FIRMWARE_MAILBOX = 'firmware_mailbox';

// Numbers 1, 2 and 6 were RMPUPDATE (private, shared) and PVALIDATE, which are no PSP commands:
// left unused so that traces keep their names (chrome-trace.ts).
const Cmd = {
  LAUNCH_START: 3,
  LAUNCH_UPDATE: 4,
  LAUNCH_FINISH: 5,
  NOP: 7,
} as const;

export function declareFirmwareMailbox(lb: LayoutBuilder): void {
  declareMailbox(lb, FIRMWARE_MAILBOX, 'firmware/mailbox.ts');
}

export class MailboxPlatform implements SnpPlatform {
  readonly mailbox: Mailbox;
  readonly core: SnpFirmwareCore;
  readonly cpu: HostRmp;

  constructor(mem: Mem, sync: Sync, tuning?: MailboxTuning) {
    this.mailbox = new Mailbox(mem, FIRMWARE_MAILBOX, sync, tuning);
    // Only for reads of the digest and the fault-injection counters: commands go through the mailbox.
    this.core = new SnpFirmwareCore(mem);
    this.cpu = new HostRmp(mem, sync, this.core);
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
    return this.mailbox.call(Cmd.LAUNCH_START, asid);
  }
  launchUpdate(asid: number, pfn: number, gfn: number, type: number): number {
    return this.mailbox.call(Cmd.LAUNCH_UPDATE, asid, pfn, gfn, type);
  }
  launchFinish(asid: number): number {
    return this.mailbox.call(Cmd.LAUNCH_FINISH, asid);
  }
  launchDigest(asid: number): Uint8Array {
    return this.core.launchDigest(asid);
  }
  /** An empty command: a bare mailbox round trip, for benchmarks. */
  nop(): number {
    return this.mailbox.call(Cmd.NOP);
  }
}

/** Serves firmware commands one at a time until the mailbox is stopped; returns the count. */
export function serveFirmware(mem: Mem, sync: Sync, tuning?: MailboxTuning): number {
  const core = new SnpFirmwareCore(mem, sync);
  const mb = new Mailbox(mem, FIRMWARE_MAILBOX, sync, tuning);
  const stats = threadStats(mem, sync.tid);
  const tracer = new Tracer(mem, sync.tid);
  return mb.serve((client, cmd, a0, a1, a2, a3) => {
    sync.point(P['firmware.before_command']);
    if (cmd !== Cmd.NOP) stats[C.firmwareCommands]++;
    if (!tracer.on) return execute(cmd, a0, a1, a2, a3);
    const t0 = tracer.now();
    const r = execute(cmd, a0, a1, a2, a3);
    tracer.record(TraceKind.FIRMWARE, cmd * 256 + client, t0);
    return r;
  });
  function execute(cmd: number, a0: number, a1: number, a2: number, a3: number): number {
    switch (cmd) {
      case Cmd.LAUNCH_START:
        return core.launchStart(a0);
      case Cmd.LAUNCH_UPDATE:
        return core.launchUpdate(a0, a1, a2, a3);
      case Cmd.LAUNCH_FINISH:
        return core.launchFinish(a0);
      case Cmd.NOP:
        return 0;
      default:
        throw new Error(`firmware: unknown command ${cmd}`);
    }
  }
}
