// The checks of 7.4's in-place conversion fire on the states they exist for, made behind the
// kernel's back (what a buggy kernel would leave): a pinned page of the file at an index stored
// private (no kvm_gmem_has_outstanding_references let that through), a host PTE there
// (kvm_gmem_fault_user_mapping and unmap_mapping_pages keep it off), and a host access that moves
// such a page's bytes; and none fires on the same state while the index is shared.

import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, Sandbox } from '../../src/index.js';
import { auditQuiescent } from '../../src/checker/audit.js';
import { GmemAttributes, KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../src/gmem/attributes_table.js';
import { Inodes } from '../../src/gmem/inode.js';

const MMAP = 1;
const INIT_SHARED = 2;

describe('in-place conversion checks (7.4, gmem_in_place_conversion=1)', () => {
  it('a pin, a host PTE and a host access on an index made private behind the kernel are each reported; on a shared one, none', async () => {
    const sb = await Sandbox.create({
      kernel: '7.4',
      moduleParams: { gmem_in_place_conversion: true },
      memory: '4MiB',
      gpaSpace: '32MiB',
      userMemory: '8MiB',
      gmemSpace: '32MiB',
    });
    try {
      const vm = await sb.createVm({ type: 'sw-protected' });
      const gmem = await vm.createGuestMemfd({ size: 2 * PAGE_SIZE, flags: MMAP | INIT_SHARED });
      const map = gmem.mmapSync({ size: 2 * PAGE_SIZE });
      map.writeSync(0, new Uint8Array([1, 2, 3]));
      const pin = await map.pin(0);
      expect(auditQuiescent(sb.mem).violations).toEqual([]);
      // What only a kernel that skipped the reference check (or the unmap) could leave.
      const ino = sb.k.g.files.inode(gmem.file);
      new GmemAttributes(sb.mem, new Inodes(sb.mem)).set(ino, 0, 1, KVM_MEMORY_ATTRIBUTE_PRIVATE);
      expect(Array.from(map.readSync(0, 3))).toEqual([1, 2, 3]);
      const v = auditQuiescent(sb.mem).violations;
      expect(v.map((x) => x.invariant)).toEqual(['hostIsolation', 'hostIsolation', 'hostIsolation']);
      expect(v.map((x) => x.detail)).toEqual([
        expect.stringMatching(
          /^the host PTE for index 0 of guest_memfd inode \d+ \(mapping \d+, page 0\) maps pfn \d+, private in the inode's attributes$/,
        ),
        expect.stringMatching(
          /^pfn \d+, index 0 of guest_memfd inode \d+, is private yet pinned \(GUP\): a conversion to private succeeded/,
        ),
        expect.stringMatching(
          /^1 host access\(es\) through a guest_memfd mapping moved the bytes of a page private in its inode's attributes/,
        ),
      ]);
      await pin.unpin();
    } finally {
      await sb.close();
    }
  });
});
