// Names a shared word for watchdog reports and traces ("folio lock of pfn 12", "invalidate_lock of inode 0").

import { allocatorLockWord, pcpLockOwner } from '../gmem/allocator.js';
import { Folios } from '../gmem/folio.js';
import { Inodes } from '../gmem/inode.js';
import { HostMappings } from '../gmem/vma.js';
import type { Mem } from '../shm/layout.js';
import type { WordDescriber } from '../shm/sync/sync.js';
import { VcpuTable } from '../kvm/vcpu.js';
import { Memslots } from '../kvm/memslots.js';
import { Vms } from '../kvm/vm.js';
import { firmwareLockWord } from './direct.js';
import { Rmp } from './rmp.js';

export function wordDescriber(mem: Mem): WordDescriber {
  const folios = new Folios(mem);
  const inodes = new Inodes(mem);
  const vms = new Vms(mem);
  const allocLock = allocatorLockWord(mem);
  const fwLock = firmwareLockWord(mem);
  const vcpus = new VcpuTable(mem);
  const memslots = new Memslots(mem);
  const rmp = new Rmp(mem);
  const mmapLock = new HostMappings(mem).mmapLockWord;
  return (i) => {
    if (i === allocLock) return { name: 'pfn allocator lock', kind: 'mutex' };
    if (i === fwLock) return { name: 'firmware command lock', kind: 'mutex' };
    const pcp = pcpLockOwner(mem, i);
    if (pcp >= 0) return { name: `pcp list lock of thread ${pcp}`, kind: 'mutex' };
    const slot = vcpus.ackWordSlot(i);
    if (slot >= 0) return { name: `TLB-flush acknowledgement of vCPU slot ${slot} (still in guest mode)`, kind: 'word' };
    if (folios.ownsWord(i)) return { name: `folio lock of pfn ${folios.pfnOfWord(i)}`, kind: 'mutex' };
    const ino = inodes.inodeOfLockWord(i);
    if (ino >= 0) return { name: `invalidate_lock (rwsem) of guest_memfd inode ${ino}`, kind: 'rwsem' };
    if (i === inodes.tableLockWord) return { name: 'guest_memfd inode table lock', kind: 'mutex' };
    if (i === mmapLock) return { name: 'mmap_lock (rwsem) of the VMM process', kind: 'rwsem' };
    const rmpPfn = rmp.pfnOfWord(i);
    if (rmpPfn >= 0) return { name: `RMP entry of pfn ${rmpPfn} (an RMPUPDATE in progress)`, kind: 'word' };
    for (let vm = 0; vm < mem.limits.maxVms; vm++) {
      if (i === memslots.generationWord(vm))
        return {
          name: `the memslot generation of vm ${vm} (a fault retrying on an INVALID slot waits for the next publish)`,
          kind: 'word',
        };
    }
    const v = vms.describeWord(i);
    if (v !== null) {
      if (v.what === 'srcu')
        return {
          name: `synchronize_srcu(kvm->srcu of vm ${v.vm}): the read section of thread ${v.reader}`,
          kind: 'srcu',
          reader: v.reader,
        };
      return {
        name: `${v.what} of vm ${v.vm}`,
        kind: v.what === 'mmu_lock' ? 'rwsem' : v.what === 'slots_lock' || v.what === 'kvm->lock' ? 'mutex' : 'word',
      };
    }
    return { name: `shared word ${i}`, kind: 'word' };
  };
}
