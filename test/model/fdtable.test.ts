// The VMM process's fd table (fs/file.c: alloc_fd's lowest free fd, fget / fdget with a
// reference, close_fd, fput with the release as task work), shared by every VMM thread: -EBADF and
// -EINVAL from a guest_memfd lookup, a close that a reference outlives, and -EMFILE when full.

import { describe, expect, it } from 'vitest';
import { FdKind, MAX_FDS, fdputGmem } from '../../src/kvm/fdtable.js';
import { Errno } from '../../src/shm/errno.js';
import { MiB, smallSandbox, thrown } from '../helpers/helpers.js';

describe('the shared fd table', () => {
  it('gives the lowest free fd, as open(2) does, and a closed fd number is reused', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'sw-protected' });
    const a = await vm.createGuestMemfd({ size: MiB });
    const b = await vm.createGuestMemfd({ size: MiB });
    expect([vm.fd, a.fd, b.fd]).toEqual([3, 4, 5]);
    await a.close();
    const c = await vm.createGuestMemfd({ size: MiB });
    expect(c.fd).toBe(4);
    // The old object's fd now names another file: the old object answers EBADF, not c's file.
    expect(thrown(() => a.fstat())).toMatchObject({ code: 'EBADF' });
    expect(c.fstat()).toEqual({ size: MiB });
  });

  it('a lookup answers EBADF for no file and EINVAL for an fd that is not a guest_memfd', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'sw-protected' });
    expect(sb.fdt.fgetGmem(sb.k, 77)).toBe(-Errno.EBADF);
    expect(sb.fdt.fgetGmem(sb.k, -1)).toBe(-Errno.EBADF);
    expect(sb.fdt.fgetGmem(sb.k, MAX_FDS)).toBe(-Errno.EBADF);
    expect(sb.fdt.fgetGmem(sb.k, vm.fd)).toBe(-Errno.EINVAL);
    expect(sb.fdt.peek(vm.fd)).toEqual({ fd: vm.fd, kind: FdKind.VM, value: vm.id });
  });

  it('a reference taken by a lookup keeps the file past close(2); its fdput releases it', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'sw-protected' });
    const g = await vm.createGuestMemfd({ size: MiB });
    const files = sb.k.g.files;
    const f = sb.fdt.fgetGmem(sb.k, g.fd);
    expect(f).toBe(g.file);
    expect(files.refcount(f)).toBe(2);
    await g.close();
    // Another thread's lookup now misses; this one's reference still holds the file open.
    expect(sb.fdt.fgetGmem(sb.k, g.fd)).toBe(-Errno.EBADF);
    expect(files.isOpen(f)).toBe(true);
    expect(files.refcount(f)).toBe(1);
    fdputGmem(sb.k, f);
    // The last fput: kvm_gmem_release ran as this thread's task work, and the record is freed.
    expect(files.valid(f)).toBe(false);
  });

  it('two sandboxes attached to one memory share the table, as two threads of one process do', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'sw-protected' });
    const g = await vm.createGuestMemfd({ size: MiB });
    const { Sandbox } = await import('../../src/vmm/sandbox/sandbox.js');
    const other = Sandbox.attach(sb.descriptor, 5, { platform: 'direct' });
    expect(other.gmemFileOfFd(g.fd)).toBe(g.file);
    other.closeFd(g.fd);
    expect(thrown(() => g.fstat())).toMatchObject({ code: 'EBADF' });
    expect(thrown(() => sb.closeFd(g.fd))).toMatchObject({ code: 'EBADF', errno: 9 });
  });

  it(`refuses an fd past the table's ${MAX_FDS} entries with EMFILE, and installs nothing`, async () => {
    const sb = await smallSandbox();
    const used = sb.fdt.open().length;
    for (let i = used + 3; i < MAX_FDS; i++) expect(sb.fdt.install(FdKind.VCPU, 0)).toBeGreaterThan(0);
    expect(sb.fdt.install(FdKind.VCPU, 0)).toBe(-Errno.EMFILE);
    expect(sb.fdt.open().length).toBe(MAX_FDS - 3);
  });
});
