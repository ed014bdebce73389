// Every VMM op's handler, by name. A new op: its name at the end of VMM_OPS (mix.ts), its
// handler in the file of its kind, and its entry here (the Record type makes the entry required).

import type { VmmOp } from '../mix.js';
import { fallocate, hwpoison, oom, punch } from './file.js';
import { mmap, munmap, touch } from './host.js';
import { convert2, pin } from './inplace.js';
import { badbind, close, memflags, memslot, plainslot } from './memslot.js';
import type { OpHandler } from './op.js';
import { convert, fwfail, launch, populate, prefault, signal, vcpu } from './vm.js';

export const VMM_OP_HANDLERS: Record<VmmOp, OpHandler> = {
  punch,
  fallocate,
  convert,
  prefault,
  populate,
  memslot,
  memflags,
  plainslot,
  badbind,
  close,
  hwpoison,
  fwfail,
  oom,
  signal,
  mmap,
  touch,
  munmap,
  launch,
  vcpu,
  convert2,
  pin,
};
