// Names a shared word for watchdog reports ("folio lock of pfn 12", "invalidate_lock of inode 0").

import { Folios } from '../gmem/folio.js';
import { Inodes } from '../gmem/inode.js';
import type { Mem } from '../shm/layout.js';
import type { WordDescriber } from '../shm/sync.js';
import { Vms } from './vm.js';

export function wordDescriber(mem: Mem): WordDescriber {
  const folios = new Folios(mem);
  const inodes = new Inodes(mem);
  const vms = new Vms(mem);
  return (i) => {
    if (folios.ownsWord(i)) return { name: `folio lock of pfn ${folios.pfnOfWord(i)}`, kind: 'mutex' };
    const ino = inodes.inodeOfLockWord(i);
    if (ino >= 0) return { name: `invalidate_lock (rwsem) of guest_memfd inode ${ino}`, kind: 'rwsem' };
    if (i === inodes.tableLockWord) return { name: 'guest_memfd inode table lock', kind: 'mutex' };
    const v = vms.describeWord(i);
    if (v !== null) return { name: `${v.what} of vm ${v.vm}`, kind: v.what === 'mmu_lock' ? 'rwsem' : v.what === 'slots_lock' ? 'mutex' : 'word' };
    return { name: `shared word ${i}`, kind: 'word' };
  };
}
