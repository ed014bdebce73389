// The SNP firmware thread: serves the command mailbox, one command at a time, until stopped.

import { type SharedBuffers, mapBuffers } from '../shm/layout.js';
import type { MailboxTuning } from '../shm/mailbox.js';
import { exposeToParent } from '../shm/rpc.js';
import { FreeSync } from '../shm/sync/free.js';
import { serveFirmware } from './mailbox.js';

class FirmwareWorker {
  serve(buffers: SharedBuffers, tid: number, tuning?: MailboxTuning): number {
    const mem = mapBuffers(buffers);
    return serveFirmware(mem, new FreeSync(mem, tid), tuning);
  }
}

export type FirmwareWorkerApi = FirmwareWorker;
exposeToParent(new FirmwareWorker());
