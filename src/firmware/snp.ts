// The SNP firmware's (PSP's) commands, executed one at a time by whoever serves them (the firmware
// worker, or the caller under the firmware lock). RMPUPDATE and PVALIDATE are CPU instructions, in
// rmp.ts and host-rmp.ts. Owns the 'snp_guests' region: per ASID, the launch state and the running
// launch digest, and the fault-injection counters.

import { createHash } from 'node:crypto';
import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { SevRet, SnpPageType } from '../kvm/psp.js';
import { NO_WRITE_POINTS, type WritePoints } from '../shm/sync/sync.js';
import { RMP_ASSIGNED, RMP_VALIDATED, Rmp } from './rmp.js';

const GUEST_WORDS = 16;
const G_STATE = 0;
const G_PAGES = 1;
const G_DIGEST = 2; // 12 words = 48 bytes
export const DIGEST_BYTES = 48;

/** Guest states in the firmware. */
export const GuestState = { NONE: 0, LAUNCH: 1, RUNNING: 2 } as const;

const REGION = 'snp_guests';
/** Fault injection: fail the next N commands of a kind. */
const FAIL_WORDS = 4;
export const FwCmd = { RMPUPDATE: 0, LAUNCH_UPDATE: 1, LAUNCH_START: 2, LAUNCH_FINISH: 3 } as const;

export function declareSnpGuests(lb: LayoutBuilder, maxVms: number): void {
  lb.add(REGION, FAIL_WORDS + (maxVms + 1) * GUEST_WORDS, 'firmware/snp.ts');
}

export class SnpFirmwareCore {
  readonly rmp: Rmp;
  private readonly base: number;
  private readonly w: Int32Array;
  private readonly host: Uint8Array;

  constructor(mem: Mem, wp: WritePoints = NO_WRITE_POINTS) {
    this.rmp = new Rmp(mem, wp);
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
    this.host = mem.host;
  }

  private g(asid: number): number {
    return this.base + FAIL_WORDS + asid * GUEST_WORDS;
  }

  /** Makes the next `n` commands of kind `cmd` fail (fault injection). */
  injectFailures(cmd: number, n: number): void {
    Atomics.store(this.w, this.base + cmd, n);
  }
  /** Consumes one injected failure of kind `cmd`, if any (any thread: a CAS on the counter). */
  injected(cmd: number): boolean {
    const i = this.base + cmd;
    for (let n = Atomics.load(this.w, i); n > 0; n = Atomics.load(this.w, i)) {
      if (Atomics.compareExchange(this.w, i, n, n - 1) === n) return true;
    }
    return false;
  }

  guestState(asid: number): number {
    return Atomics.load(this.w, this.g(asid) + G_STATE);
  }
  measuredPages(asid: number): number {
    return Atomics.load(this.w, this.g(asid) + G_PAGES);
  }

  // SNP_LAUNCH_START
  launchStart(asid: number): number {
    if (this.injected(FwCmd.LAUNCH_START)) return SevRet.INJECTED_FAILURE;
    const g = this.g(asid);
    if (Atomics.load(this.w, g + G_STATE) !== GuestState.NONE) return SevRet.INVALID_GUEST_STATE;
    for (let k = 0; k < GUEST_WORDS; k++) Atomics.store(this.w, g + k, 0);
    Atomics.store(this.w, g + G_STATE, GuestState.LAUNCH);
    return SevRet.SUCCESS;
  }

  // SNP_LAUNCH_UPDATE: the page must be assigned to the guest, immutable and not yet validated;
  // it is measured (unless UNMEASURED) and left validated and guest-owned.
  launchUpdate(asid: number, pfn: number, gfn: number, type: number): number {
    if (this.injected(FwCmd.LAUNCH_UPDATE)) return SevRet.INJECTED_FAILURE;
    const g = this.g(asid);
    if (Atomics.load(this.w, g + G_STATE) !== GuestState.LAUNCH) return SevRet.INVALID_GUEST_STATE;
    const e = this.rmp.lookup(pfn);
    if (!e.assigned || e.asid !== asid || !e.immutable || e.validated) return SevRet.INVALID_PAGE_STATE;
    if (e.gfn !== gfn) return SevRet.INVALID_PARAM;
    const page = this.host.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
    if (type === SnpPageType.ZERO || type === SnpPageType.SECRETS) page.fill(0);
    this.extendDigest(asid, type === SnpPageType.UNMEASURED ? null : page, gfn, type);
    Atomics.add(this.w, g + G_PAGES, 1);
    this.rmp.firmwareWrite(pfn, RMP_ASSIGNED | RMP_VALIDATED, asid, gfn);
    return SevRet.SUCCESS;
  }

  /**
   * digest' = SHA-384(digest || contents || gpa || type), as the PAGE_INFO chain does; contents
   * is SHA-384(page), or zeros for an UNMEASURED page (its GPA and type are still measured).
   */
  private extendDigest(asid: number, page: Uint8Array | null, gfn: number, type: number): void {
    const dw = this.g(asid) + G_DIGEST;
    const prev = new Uint8Array(new Int32Array(this.w.slice(dw, dw + DIGEST_BYTES / 4)).buffer);
    const info = Buffer.alloc(16);
    info.writeBigUInt64LE(BigInt(gfn) * BigInt(PAGE_SIZE), 0);
    info.writeUInt32LE(type, 8);
    const next = createHash('sha384')
      .update(prev)
      .update(page === null ? new Uint8Array(DIGEST_BYTES) : createHash('sha384').update(page).digest())
      .update(info)
      .digest();
    const words = new Int32Array(next.buffer, next.byteOffset, DIGEST_BYTES / 4);
    for (let k = 0; k < DIGEST_BYTES / 4; k++) Atomics.store(this.w, dw + k, words[k]);
  }

  // SNP_LAUNCH_FINISH
  launchFinish(asid: number): number {
    if (this.injected(FwCmd.LAUNCH_FINISH)) return SevRet.INJECTED_FAILURE;
    const g = this.g(asid);
    if (Atomics.load(this.w, g + G_STATE) !== GuestState.LAUNCH) return SevRet.INVALID_GUEST_STATE;
    Atomics.store(this.w, g + G_STATE, GuestState.RUNNING);
    return SevRet.SUCCESS;
  }

  launchDigest(asid: number): Uint8Array {
    const dw = this.g(asid) + G_DIGEST;
    return new Uint8Array(new Int32Array(this.w.slice(dw, dw + DIGEST_BYTES / 4)).buffer);
  }

  /** Forgets a guest (its VM was destroyed). */
  decommission(asid: number): void {
    const g = this.g(asid);
    for (let k = 0; k < GUEST_WORDS; k++) Atomics.store(this.w, g + k, 0);
  }
}
