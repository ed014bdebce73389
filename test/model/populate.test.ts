// kvm_gmem_populate through SNP LAUNCH_UPDATE (arch/x86/kvm/svm/sev.c: snp_launch_update,
// sev_gmem_post_populate): launch-state checks; every populate failure returned as -EIO, with the
// populate errno kept as `populateError`; a gfn that is not PRIVATE refused (e4ee54479273); injected
// firmware and RMPUPDATE failures; the count of pages done; pages that arrive guest-owned and
// validated; and the launch digest over GPA, page type and contents.

import { describe, expect, it } from 'vitest';
import { HOST_PATTERN, type PolicyName, SevRet } from '../../src/index.js';
import {
  MiB,
  PAGE_SIZE,
  dataOf,
  expectHostIsolation,
  faultAndValidate,
  filled,
  image,
  linkSecondVm,
  setupVm,
  smallSandbox,
  statsDelta,
} from '../helpers/helpers.js';

const ZERO_DIGEST = '00'.repeat(48);

describe('SNP launch commands: state checks', () => {
  it('LAUNCH_UPDATE before LAUNCH_START is EINVAL (not wrapped in EIO)', async () => {
    const { sb, vm, gmem } = await setupVm({ type: 'snp' });
    const err = await vm.snpLaunchUpdate({ gpa: 0, data: image(1) }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EINVAL', errno: 22 });
    expect((err as { populateError?: string }).populateError).toBeUndefined();
    expect(gmem.folioAt(0)).toBeNull();
    expect(sb.stats().populatedPages).toBe(0);
  });

  it('LAUNCH_START twice is EINVAL; LAUNCH_FINISH before LAUNCH_START is EINVAL', async () => {
    const { vm } = await setupVm({ type: 'snp' });
    await expect(vm.snpLaunchFinish()).rejects.toMatchObject({ code: 'EINVAL' });
    await vm.snpLaunchStart();
    await expect(vm.snpLaunchStart()).rejects.toMatchObject({ code: 'EINVAL' });
    // The refused second start did not reset the launch.
    await vm.snpLaunchUpdate({ gpa: 0, data: image(1) });
    const digest = vm.snpLaunchDigest();
    await expect(vm.snpLaunchStart()).rejects.toMatchObject({ code: 'EINVAL' });
    expect(vm.snpLaunchDigest()).toBe(digest);
  });

  it("on a 'default' or 'sw-protected' VM, LAUNCH_START and LAUNCH_FINISH are ENOTTY, LAUNCH_UPDATE is EINVAL (snp_launch_update)", async () => {
    for (const type of ['default', 'sw-protected'] as const) {
      const sb = await smallSandbox();
      const vm = await sb.createVm({ type });
      await expect(vm.snpLaunchStart(), type).rejects.toMatchObject({ code: 'ENOTTY', errno: 25 });
      await expect(vm.snpLaunchUpdate({ gpa: 0, data: image(1) }), type).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
      await expect(vm.snpLaunchFinish(), type).rejects.toMatchObject({ code: 'ENOTTY' });
    }
  });

  it('after LAUNCH_FINISH the firmware refuses LAUNCH_UPDATE: EIO, page back to shared, digest fixed', async () => {
    const { sb, vm, gmem } = await setupVm({ type: 'snp', launch: 'started' });
    await vm.snpLaunchUpdate({ gpa: 0, data: image(1) });
    await vm.snpLaunchFinish();
    const digest = vm.snpLaunchDigest();
    const err = await vm.snpLaunchUpdate({ gpa: PAGE_SIZE, data: image(2) }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EIO', errno: 5, populateError: 'EIO', fwError: SevRet.INVALID_GUEST_STATE });
    expect(vm.snpLaunchDigest()).toBe(digest);
    // sev_gmem_post_populate restored the page to hypervisor-owned; the folio is not up to date.
    expect(vm.rmpQuery(PAGE_SIZE)).toMatchObject({ present: true, assigned: false, asid: 0, validated: false });
    expect(gmem.folioAt(PAGE_SIZE)).toMatchObject({ uptodate: false });
    await expect(vm.snpLaunchFinish()).rejects.toMatchObject({ code: 'EIO' });
    expectHostIsolation(sb);
  });
});

describe('kvm_gmem_populate errors', () => {
  it('a gfn that is not PRIVATE: EIO with populateError EINVAL; nothing registered', async () => {
    const { sb, vm, gmem } = await setupVm({ type: 'snp', launch: 'started', private: false });
    const err = await vm.snpLaunchUpdate({ gpa: 0, data: image(1) }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EIO', populateError: 'EINVAL' });
    expect(vm.rmpQuery(0)).toMatchObject({ present: true, assigned: false });
    expect(gmem.folioAt(0)).toMatchObject({ uptodate: false });
    expect(vm.snpLaunchDigest()).toBe(ZERO_DIGEST);
    expect(sb.stats().populatedPages).toBe(0);
  });

  it('a gfn without a guest_memfd slot is EINVAL (no slot, or a plain slot)', async () => {
    const { vm } = await setupVm({ type: 'snp', launch: 'started', gmemSize: MiB });
    await vm.setMemoryAttributes({ address: 4 * MiB, size: 2 * MiB, attributes: 'private' });
    const e1 = await vm.snpLaunchUpdate({ gpa: 4 * MiB, data: image(1) }).catch((e: unknown) => e);
    expect(e1).toMatchObject({ code: 'EINVAL' });
    expect((e1 as { populateError?: string }).populateError).toBeUndefined();
    await vm.setUserMemoryRegion2({ slot: 1, guestPhysAddr: 5 * MiB, memorySize: MiB });
    await expect(vm.snpLaunchUpdate({ gpa: 5 * MiB, data: image(1) })).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it("the slot's file closed: EIO with populateError EFAULT", async () => {
    const { vm, gmem } = await setupVm({ type: 'snp', launch: 'started' });
    await gmem.close();
    await expect(vm.snpLaunchUpdate({ gpa: 0, data: image(1) })).rejects.toMatchObject({ code: 'EIO', populateError: 'EFAULT' });
  });

  // The launching VM's own vCPU cannot fault (no entry before LAUNCH_FINISH): a running VM bound
  // to the same inode faults the page.
  // EEXIST from common code since de80252414f3 (6.11); at the seed the page reaches
  // sev_gmem_post_populate, which refuses its assigned RMP entry with EINVAL.
  it.each([
    ['prepare-on-fault', 'EINVAL'],
    ['prepare-on-fault-own-vm', 'EEXIST'],
  ] as Array<[PolicyName, string]>)(
    '%s: a page already up to date (faulted) is EIO with populateError %s',
    async (policy, populateError) => {
      const a = await setupVm({ policy, type: 'snp', launch: 'started' });
      const { sb, vm } = a;
      const b = await linkSecondVm(a);
      await faultAndValidate(b.vcpu, 0);
      const q = vm.rmpQuery(0);
      const err = await vm.snpLaunchUpdate({ gpa: 0, data: image(1) }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'EIO', populateError });
      expect(vm.rmpQuery(0)).toEqual(q);
      expect(dataOf(await b.vcpu.read(0, 16))).toEqual(filled(16, 0));
      expect(vm.snpLaunchDigest()).toBe(ZERO_DIGEST);
      expectHostIsolation(sb);
    },
  );

  it('an injected LAUNCH_UPDATE firmware failure: EIO, page restored to shared, and a retry succeeds', async () => {
    const { sb, vm, vcpu } = await setupVm({ type: 'snp', launch: 'started' });
    sb.injectFirmwareFailures('LAUNCH_UPDATE');
    await expect(vm.snpLaunchUpdate({ gpa: 0, data: image(4) })).rejects.toMatchObject({
      code: 'EIO',
      populateError: 'EIO',
      fwError: SevRet.INJECTED_FAILURE,
    });
    expect(vm.rmpQuery(0)).toMatchObject({ present: true, assigned: false });
    expect(vm.snpLaunchDigest()).toBe(ZERO_DIGEST);
    await expect(vm.snpLaunchUpdate({ gpa: 0, data: image(4) })).resolves.toEqual({ pagesDone: 1 });
    await vm.snpLaunchFinish();
    expect(dataOf(await vcpu.read(0, PAGE_SIZE))).toEqual([...image(4)]);
    expectHostIsolation(sb);
  });

  it('an injected RMPUPDATE failure is EIO with populateError EFAULT (rmp_make_private fails with EFAULT)', async () => {
    const { sb, vm } = await setupVm({ type: 'snp', launch: 'started' });
    sb.injectFirmwareFailures('RMPUPDATE');
    await expect(vm.snpLaunchUpdate({ gpa: 0, data: image(4) })).rejects.toMatchObject({ code: 'EIO', populateError: 'EFAULT' });
    expect(vm.rmpQuery(0)).toMatchObject({ present: true, assigned: false });
    await expect(vm.snpLaunchUpdate({ gpa: 0, data: image(4) })).resolves.toEqual({ pagesDone: 1 });
  });

  it('fails on the first page: error; fails later: the pages done (kvm_gmem_populate returns the count)', async () => {
    const a = await setupVm({ policy: 'prepare-on-fault-own-vm', type: 'snp', launch: 'started' });
    const { vm } = a;
    await faultAndValidate((await linkSecondVm(a)).vcpu, 2 * PAGE_SIZE);
    const data = new Uint8Array(4 * PAGE_SIZE).fill(0x3c);
    expect(await vm.snpLaunchUpdate({ gpa: 0, len: 4 * PAGE_SIZE, data })).toEqual({ pagesDone: 2 });
    await expect(vm.snpLaunchUpdate({ gpa: 2 * PAGE_SIZE, len: 2 * PAGE_SIZE, data })).rejects.toMatchObject({
      code: 'EIO',
      populateError: 'EEXIST',
    });
  });
});

describe('LAUNCH_UPDATE: contents, RMP and the launch digest', () => {
  it('pages arrive with the launch image, guest-owned and validated', async () => {
    const { sb, vm, vcpu, gmem } = await setupVm({ type: 'snp', launch: 'started' });
    const data = new Uint8Array(3 * PAGE_SIZE);
    for (let i = 0; i < 3; i++) data.set(image(10 + i), i * PAGE_SIZE);
    const d = await statsDelta(sb, ['populatedPages', 'prepares', 'archPrepareCalls'], async () => {
      expect(await vm.snpLaunchUpdate({ gpa: 4 * PAGE_SIZE, len: 3 * PAGE_SIZE, data })).toEqual({ pagesDone: 3 });
    });
    expect(d).toEqual({ populatedPages: 3, prepares: 0, archPrepareCalls: 0 });
    await vm.snpLaunchFinish();
    for (let i = 0; i < 3; i++) {
      const gpa = (4 + i) * PAGE_SIZE;
      expect(vm.rmpQuery(gpa)).toEqual({
        present: true,
        pfn: gmem.folioAt(gpa)!.pfn,
        assigned: true,
        asid: vm.asid,
        gpa,
        validated: true,
        immutable: false,
      });
      expect(gmem.folioAt(gpa)).toMatchObject({ uptodate: true, refcount: 1 });
      // No PVALIDATE needed.
      const bytes = dataOf(await vcpu.read(gpa, PAGE_SIZE));
      expect(bytes).toEqual([...image(10 + i)]);
      expect(bytes).not.toContain(HOST_PATTERN);
    }
    expectHostIsolation(sb);
  });

  it("a short image is padded with zeros; a 'zero' page reads zeros", async () => {
    const { vm, vcpu } = await setupVm({ type: 'snp', launch: 'started' });
    await vm.snpLaunchUpdate({ gpa: 0, len: PAGE_SIZE, data: Uint8Array.of(1, 2, 3) });
    await vm.snpLaunchUpdate({ gpa: PAGE_SIZE, len: PAGE_SIZE, type: 'zero' });
    await vm.snpLaunchFinish();
    expect(dataOf(await vcpu.read(0, 5))).toEqual([1, 2, 3, 0, 0]);
    expect(dataOf(await vcpu.read(PAGE_SIZE, PAGE_SIZE))).toEqual(filled(PAGE_SIZE, 0));
  });

  it('the digest starts at zero and changes with each measured page', async () => {
    const { vm } = await setupVm({ type: 'snp', launch: 'started' });
    const seen = [vm.snpLaunchDigest()];
    expect(seen[0]).toBe(ZERO_DIGEST);
    for (let i = 0; i < 3; i++) {
      await vm.snpLaunchUpdate({ gpa: i * PAGE_SIZE, data: image(i) });
      seen.push(vm.snpLaunchDigest());
    }
    expect(seen.every((d) => /^[0-9a-f]{96}$/.test(d))).toBe(true);
    expect(new Set(seen).size).toBe(4);
  });

  it('the same image at the same gpas gives the same digest on two sandboxes; another gpa or content does not', async () => {
    async function launch(pages: Array<[number, number]>): Promise<string> {
      const { vm } = await setupVm({ type: 'snp', launch: 'started' });
      for (const [gpa, seed] of pages) await vm.snpLaunchUpdate({ gpa, data: image(seed) });
      await vm.snpLaunchFinish();
      return vm.snpLaunchDigest();
    }
    const a = await launch([
      [0, 1],
      [PAGE_SIZE, 2],
    ]);
    const b = await launch([
      [0, 1],
      [PAGE_SIZE, 2],
    ]);
    expect(a).toBe(b);
    expect(
      await launch([
        [0, 1],
        [2 * PAGE_SIZE, 2],
      ]),
    ).not.toBe(a);
    expect(
      await launch([
        [0, 1],
        [PAGE_SIZE, 3],
      ]),
    ).not.toBe(a);
    expect(
      await launch([
        [PAGE_SIZE, 2],
        [0, 1],
      ]),
    ).not.toBe(a);
  });

  it("an 'unmeasured' page extends the digest by its GPA and type only, and is still populated", async () => {
    const { vm, vcpu } = await setupVm({ type: 'snp', launch: 'started' });
    await vm.snpLaunchUpdate({ gpa: 0, data: image(1) });
    const digest = vm.snpLaunchDigest();
    expect(await vm.snpLaunchUpdate({ gpa: PAGE_SIZE, data: image(2), type: 'unmeasured' })).toEqual({ pagesDone: 1 });
    const afterUnmeasured = vm.snpLaunchDigest();
    expect(afterUnmeasured).not.toBe(digest);
    // The contents do not count: another sandbox with other bytes in that page gets the same digest.
    const other = await setupVm({ type: 'snp', launch: 'started' });
    await other.vm.snpLaunchUpdate({ gpa: 0, data: image(1) });
    await other.vm.snpLaunchUpdate({ gpa: PAGE_SIZE, data: image(3), type: 'unmeasured' });
    expect(other.vm.snpLaunchDigest()).toBe(afterUnmeasured);
    await vm.snpLaunchFinish();
    expect(vm.rmpQuery(PAGE_SIZE)).toMatchObject({ assigned: true, asid: vm.asid, validated: true });
    expect(dataOf(await vcpu.read(PAGE_SIZE, 8))).toEqual([...image(2).subarray(0, 8)]);
  });
});
