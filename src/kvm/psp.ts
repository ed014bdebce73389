// What KVM's SEV code needs from the platform, in two kinds: the RMP as the host CPU reaches it
// (snp_lookup_rmpentry, a memory read; RMPUPDATE, an instruction), always on the calling thread;
// and the PSP's commands, serialised by the firmware, served in process (under the firmware lock)
// or by the firmware worker through its mailbox. Implemented by src/firmware.

import type { Gfn, Pfn } from '../shm/frames.js';

/** SEV firmware status codes (enum sev_ret_code), the ones the model produces. */
export const SevRet = {
  SUCCESS: 0x00,
  INVALID_PLATFORM_STATE: 0x01,
  INVALID_GUEST_STATE: 0x02,
  INVALID_ADDRESS: 0x09,
  INVALID_GUEST: 0x10,
  INVALID_PARAM: 0x16,
  INVALID_PAGE_STATE: 0x1a,
  INVALID_PAGE_OWNER: 0x1c,
  /** Not a firmware code: the sandbox injected a failure. */
  INJECTED_FAILURE: 0xfe,
} as const;

/**
 * RMPUPDATE return codes (arch/x86/include/asm/sev.h). Linux's rmpupdate() retries only
 * FAIL_OVERLAP, the failure of an update racing another on the same entry or 2 MiB region
 * ("the overlap error condition ... would get resolved relatively quickly"); anything else is
 * -EFAULT.
 */
export const RmpupdateRet = {
  SUCCESS: 0,
  FAIL_INPUT: 1,
  FAIL_PERMISSION: 2,
  FAIL_INUSE: 3,
  FAIL_OVERLAP: 4,
} as const;

/** PVALIDATE return codes. */
export const PvalidateRet = {
  SUCCESS: 0,
  FAIL_INPUT: 1,
  FAIL_SIZEMISMATCH: 6,
  FAIL_NOUPDATE: 255,
} as const;

/** KVM_SEV_SNP_PAGE_TYPE_* */
export const SnpPageType = {
  NORMAL: 1,
  ZERO: 3,
  UNMEASURED: 4,
  SECRETS: 5,
  CPUID: 6,
} as const;
export const SNP_PAGE_TYPE_NAMES = { normal: 1, zero: 3, unmeasured: 4, secrets: 5, cpuid: 6 } as const;

export interface RmpEntry {
  assigned: boolean;
  asid: number;
  gfn: number;
  validated: boolean;
  immutable: boolean;
  /** 0 = 4 KiB (only size modelled) */
  pageSize: number;
}

/**
 * The RMP from the host CPU (arch/x86/virt/svm/sev.c): runs on the calling thread, atomic per RMP
 * entry, with no lock shared with the firmware and no wait for the firmware worker.
 */
export interface HostRmpOps {
  /** snp_lookup_rmpentry: assigned? (a plain read of the RMP) */
  rmpAssigned(pfn: Pfn): boolean;
  rmpLookup(pfn: Pfn): RmpEntry;
  /** rmp_make_private: 0, or -EFAULT when RMPUPDATE fails (its transient failure is retried). */
  rmpMakePrivate(pfn: Pfn, gfn: Gfn, asid: number, immutable: boolean): number;
  /**
   * rmp_make_shared (with the reclaim of a firmware-owned page folded in); `reclaim` says it is
   * snp_page_reclaim's (a page the firmware refused), which the entry keeps for reports.
   */
  rmpMakeShared(pfn: Pfn, reclaim?: boolean): number;
}

/** The PSP's commands (drivers/crypto/ccp): one at a time, like the real secure processor. */
export interface PspCommands {
  /** SNP_LAUNCH_START / UPDATE / FINISH: firmware status codes. */
  launchStart(asid: number): number;
  launchUpdate(asid: number, pfn: number, gfn: number, type: number): number;
  launchFinish(asid: number): number;
  /** The launch digest (48 bytes of SHA-384). */
  launchDigest(asid: number): Uint8Array;
}

/** Both: what KVM's SEV code is handed. PVALIDATE is the guest's, in firmware/rmp.ts. */
export interface SnpPlatform extends HostRmpOps, PspCommands {}
