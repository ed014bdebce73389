// Behaviour changes between modelled versions that are neither a bug nor an accepted race: what a
// kernel developer comparing two versions should expect to differ, with the commit and the test
// of this project that shows both sides.

import type { KernelVersionName } from '../../gmem/version.js';

export interface VersionChange {
  readonly id: string;
  readonly title: string;
  readonly commit: string;
  /** The last version with the old behaviour, and the first with the new. */
  readonly before: KernelVersionName;
  readonly after: KernelVersionName;
  readonly what: string;
  /** A test file (or scenario) that asserts both sides. */
  readonly shownBy: string;
}

export const CHANGES: readonly VersionChange[] = [
  {
    id: 'populate-eexist-moves-to-rmp',
    title: 'a page populated twice is refused by the RMP check of sev_gmem_post_populate, no longer by kvm_gmem_populate',
    commit: '8622ef05709f (KVM: guest_memfd: Remove preparation tracking, 7.0)',
    before: '6.19',
    after: '7.0',
    what:
      'up to 6.19 kvm_gmem_populate answers EEXIST for an up-to-date folio before the callback runs (de80252414f3); from 7.0 ' +
      'common code accepts it and sev_gmem_post_populate answers EEXIST for an assigned RMP entry. The ioctl answers EIO either ' +
      'way (a later page: success with partial progress); a folio up to date but not assigned is accepted and overwritten from 7.0',
    shownBy: 'test/model/launch-update.test.ts, test/model/policies.test.ts',
  },
  {
    id: 'prepare-on-every-fault',
    title: 'the arch prepare hook runs on every kvm_gmem_get_pfn, and up to date means cleared only',
    commit: '8622ef05709f (7.0)',
    before: '6.19',
    after: '7.0',
    what:
      'a re-fault of a prepared page calls sev_gmem_prepare, which finds it assigned and returns; a failed prepare leaves a ' +
      'cleared, up-to-date folio, so the retry does not clear again',
    shownBy: 'test/model/policies.test.ts, test/model/fault-path.test.ts',
  },
  {
    id: 'populate-page-by-page',
    title: 'kvm_gmem_populate takes the invalidate lock per page, after pinning the source page',
    commit: '2a62345b3052, 6538b6221cc2 (7.0)',
    before: '6.19',
    after: '7.0',
    what:
      'a PUNCH_HOLE, a conversion or a fault can run between two pages of one LAUNCH_UPDATE; an unmapped source page fails at ' +
      'the pin (EFAULT) before any folio is looked up, where older versions grabbed the folio and failed in copy_from_user',
    shownBy: 'test/model/launch-update.test.ts',
  },
  {
    id: 'launch-update-len-zero',
    title: 'LAUNCH_UPDATE with len 0 is EINVAL',
    commit: '5b66e335ead6 (6.18)',
    before: '6.11',
    after: '6.18',
    what: 'before, zero pages were populated and the ioctl succeeded',
    shownBy: 'test/model/launch-update.test.ts',
  },
  {
    id: 'launch-update-aligned-source',
    title: 'LAUNCH_UPDATE refuses a source address that is not page aligned (EINVAL)',
    commit: 'dcbcc2323c80 (7.0)',
    before: '6.19',
    after: '7.0',
    what: 'before, copy_from_user read the unaligned source',
    shownBy: 'test/model/launch-update.test.ts',
  },
  {
    id: 'launch-finish-busy-while-creating-vcpus',
    title: 'LAUNCH_FINISH answers EBUSY while a vCPU is being created (kvm_is_vcpu_creation_in_progress)',
    commit: '624bf3440d72 (7.1, as hardening); 6418b715d5a2 (7.3) then closes the window in kvm_vm_ioctl_create_vcpu',
    before: '7.0',
    after: '7.4',
    what:
      'up to 7.0 snp_launch_update_vmsa syncs the vCPUs online and skips one between created_vcpus++ and online_vcpus++, ' +
      'as it would one created after the launch (counted, not a violation). On 7.4 the window is gone, so the EBUSY shows ' +
      'only for a vCPU made half by hand (the model test)',
    shownBy: 'test/model/snp-launch-vcpus.test.ts',
  },
];
