// What KVM's SEV code needs from the platform: reads of the RMP (snp_lookup_rmpentry, a memory
// read) and the firmware/RMPUPDATE operations. Implemented by src/firmware, in process or
// through the firmware worker's mailbox.

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

export interface SnpPlatform {
  /** snp_lookup_rmpentry: assigned? (a plain read of the RMP) */
  rmpAssigned(pfn: number): boolean;
  rmpLookup(pfn: number): RmpEntry;
  /** rmp_make_private: 0, or a negative errno when RMPUPDATE fails. */
  rmpMakePrivate(pfn: number, gfn: number, asid: number, immutable: boolean): number;
  /** rmp_make_shared (with the reclaim of a firmware-owned page folded in). */
  rmpMakeShared(pfn: number): number;
  /** SNP_LAUNCH_START / UPDATE / FINISH: firmware status codes. */
  launchStart(asid: number): number;
  launchUpdate(asid: number, pfn: number, gfn: number, type: number): number;
  launchFinish(asid: number): number;
  /** The launch digest (48 bytes of SHA-384). */
  launchDigest(asid: number): Uint8Array;
  /** PVALIDATE by the guest of `asid` at gfn: a PvalidateRet code, or -1 for an RMP #NPF. */
  pvalidate(asid: number, pfn: number, gfn: number, validate: boolean): number;
}
