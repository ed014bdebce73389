// KVM_SEV_SNP_LAUNCH_UPDATE across versions (arch/x86/kvm/svm/sev.c snp_launch_update and
// sev_gmem_post_populate; virt/kvm/guest_memfd.c kvm_gmem_populate): the checks before
// slots_lock in the kernel's order (len 0: 5b66e335ead6, 6.18; an unaligned source:
// dcbcc2323c80, 7.0), a source copied page by page with partial progress (copy_from_user in the
// callback up to 6.19, get_user_pages_fast before the invalidate lock from 7.0, 2a62345b3052),
// and where an already-populated page is refused (common code up to 6.19, de80252414f3; the RMP
// check of sev_gmem_post_populate from 7.0, 8622ef05709f).

import { describe, expect, it } from 'vitest';
import { type KernelVersionName, Sandbox } from '../../src/index.js';
import { KvmError } from '../../src/vmm/sandbox/errors.js';
import { PAGE_SIZE, dataOf, faultAndValidate, filled, image, setupVm, statsDelta } from '../helpers/helpers.js';

async function launching(kernel: KernelVersionName) {
  const sb = await Sandbox.create({ kernel, memory: '4MiB', gpaSpace: '32MiB', userMemory: '8MiB', gmemSpace: '32MiB' });
  return setupVm({ sb, type: 'snp', launch: 'started' });
}

async function errorOf(p: Promise<unknown>): Promise<KvmError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(KvmError);
  return e as KvmError;
}

describe('LAUNCH_UPDATE argument checks by version', () => {
  it.each([
    ['6.11', 'ok'],
    ['6.18', 'EINVAL'],
    ['7.0', 'EINVAL'],
  ] as const)('len 0 on %s: %s', async (kernel, want) => {
    const { sb, vm } = await launching(kernel);
    const r = vm.snpLaunchUpdate({ gpa: 0, len: 0, data: image(1) });
    if (want === 'ok') await expect(r).resolves.toEqual({ pagesDone: 0 });
    else expect(await errorOf(r)).toMatchObject({ code: 'EINVAL', populateError: undefined });
    expect(vm.snpLaunchDigest()).toBe('00'.repeat(48));
    await sb.close();
  });

  it.each([
    ['6.19', 'ok'],
    ['7.0', 'EINVAL'],
  ] as const)('a source address 8 bytes into its page on %s: %s', async (kernel, want) => {
    const { sb, vm, vcpu } = await launching(kernel);
    const r = vm.snpLaunchUpdate({ gpa: 0, len: PAGE_SIZE, data: image(3), sourceOffset: 8 });
    if (want === 'ok') {
      await expect(r).resolves.toEqual({ pagesDone: 1 });
      await vm.snpLaunchFinish();
      expect(dataOf(await vcpu.read(0, PAGE_SIZE))).toEqual([...image(3)]);
    } else {
      expect((await errorOf(r)).code).toBe('EINVAL');
      // Refused before slots_lock: no folio was even looked up.
      expect(vm.rmpQuery(0)).toEqual({ present: false });
    }
    await sb.close();
  });

  it('sourceOffset must be below the page size: an ArgumentError naming the field, and nothing done', async () => {
    const { sb, vm } = await launching('7.0');
    await expect(vm.snpLaunchUpdate({ gpa: 0, data: image(1), sourceOffset: PAGE_SIZE })).rejects.toThrow(
      /^sourceOffset: must be below the page size \(4096\), got 4096/,
    );
    expect(sb.stats().populatedPages).toBe(0);
    await sb.close();
  });
});

// Up to 6.19 the callback's copy faults after the folio was grabbed (it stays, neither up to
// date nor assigned); from 7.0 the pin fails first, before any folio is looked up.
describe.each([
  ['6.11', true],
  ['7.0', false],
] as const)('a source shorter than len on %s', (kernel, grabbed) => {
  const unmapped = grabbed ? { present: true, assigned: false, validated: false } : { present: false };
  it('the pages it covers are done and the ioctl succeeds with partial progress', async () => {
    const { sb, vm, vcpu, gmem } = await launching(kernel);
    const data = new Uint8Array(3 * PAGE_SIZE);
    data.set(image(1), 0);
    data.set(image(2), PAGE_SIZE);
    await expect(vm.snpLaunchUpdate({ gpa: 0, len: 3 * PAGE_SIZE, data, sourcePages: 2 })).resolves.toEqual({ pagesDone: 2 });
    expect(vm.rmpQuery(2 * PAGE_SIZE)).toMatchObject(unmapped);
    expect(gmem.folioAt(2 * PAGE_SIZE)?.uptodate ?? null).toBe(grabbed ? false : null);
    await vm.snpLaunchFinish();
    expect(dataOf(await vcpu.read(PAGE_SIZE, PAGE_SIZE))).toEqual([...image(2)]);
    await sb.close();
  });

  it('no source page mapped: EIO, with EFAULT from kvm_gmem_populate, nothing measured', async () => {
    const { sb, vm } = await launching(kernel);
    expect(await errorOf(vm.snpLaunchUpdate({ gpa: 0, len: PAGE_SIZE, data: image(1), sourcePages: 0 }))).toMatchObject({
      code: 'EIO',
      populateError: 'EFAULT',
    });
    expect(vm.snpLaunchDigest()).toBe('00'.repeat(48));
    expect(vm.rmpQuery(0)).toMatchObject(unmapped);
    await sb.close();
  });
});

describe.each([
  ['6.19', 0],
  ['7.0', 1],
] as const)('a page populated twice on %s', (kernel, hookCalls) => {
  it('refused EEXIST (the first page: EIO), and as the second page of a range: success with partial progress', async () => {
    const { sb, vm, vcpu } = await launching(kernel);
    await vm.snpLaunchUpdate({ gpa: PAGE_SIZE, data: image(2) });
    const digest = vm.snpLaunchDigest();
    // The RMP lookup of sev_gmem_post_populate runs only where common code no longer refuses.
    const d = await statsDelta(sb, ['populatedPages', 'rmpUpdates'], async () => {
      expect(await errorOf(vm.snpLaunchUpdate({ gpa: PAGE_SIZE, data: image(9) }))).toMatchObject({ code: 'EIO', populateError: 'EEXIST' });
    });
    expect(d).toEqual({ populatedPages: 0, rmpUpdates: 0 });
    expect(vm.snpLaunchDigest()).toBe(digest);
    const two = new Uint8Array(2 * PAGE_SIZE);
    two.set(image(1), 0);
    two.set(image(9), PAGE_SIZE);
    await expect(vm.snpLaunchUpdate({ gpa: 0, len: 2 * PAGE_SIZE, data: two })).resolves.toEqual({ pagesDone: 1 });
    await vm.snpLaunchFinish();
    expect(dataOf(await vcpu.read(0, PAGE_SIZE))).toEqual([...image(1)]);
    // A guest fault on a populated page: 7.0 asks the hook, which finds it assigned.
    const f = await statsDelta(sb, ['archPrepareCalls', 'rmpUpdates', 'clears'], async () => {
      expect(dataOf(await vcpu.read(PAGE_SIZE, PAGE_SIZE))).toEqual([...image(2)]);
    });
    expect(f).toEqual({ archPrepareCalls: hookCalls, rmpUpdates: 0, clears: 0 });
    // A page never populated: cleared and registered on its first fault, in both.
    const g = await statsDelta(sb, ['archPrepareCalls', 'rmpUpdates', 'clears'], () => faultAndValidate(vcpu, 2 * PAGE_SIZE));
    expect(g).toEqual({ archPrepareCalls: 1, rmpUpdates: 1, clears: 1 });
    expect(dataOf(await vcpu.read(2 * PAGE_SIZE + 8, 8))).toEqual(filled(8, 0));
    await sb.close();
  });
});
