// The prepare policies: where a folio is cleared and registered, before and after b85524314a,
// and after 7.0 removed the tracking of what was prepared (8622ef05709f).

export const POLICIES = ['prepare-on-allocate', 'prepare-on-fault', 'prepare-on-fault-own-vm', 'prepare-on-every-fault'] as const;
export type PolicyName = (typeof POLICIES)[number];

export const Policy = {
  /** Linux 6.10: fallocate and every get_pfn prepare, for every VM bound to the inode. */
  ON_ALLOCATE: 0,
  /** b85524314a: only get_pfn prepares, once per folio, for every VM bound to the inode. */
  ON_FAULT: 1,
  /** 6.11 release: only get_pfn prepares, once per folio, for the faulting VM only. */
  ON_FAULT_OWN_VM: 2,
  /**
   * 7.0 (8622ef05709f): get_pfn clears a folio that is not up to date (uptodate now means
   * cleared only) and calls the arch prepare for the faulting VM on every call; the arch hook
   * checks its own state (SNP: an assigned RMP entry is left alone).
   */
  ON_EVERY_FAULT: 3,
} as const;
export type Policy = (typeof Policy)[keyof typeof Policy];

export function policyId(name: string): Policy {
  const i = (POLICIES as readonly string[]).indexOf(name);
  if (i < 0) throw new Error(`policy: must be one of ${POLICIES.join(', ')}; got '${name}'`);
  return i as Policy;
}

/** The policy name of each Policy value. */
export const POLICY_NAMES_BY_ID: readonly PolicyName[] = POLICIES;
