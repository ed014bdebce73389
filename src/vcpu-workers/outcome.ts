// How one step (an ioctl or a guest access) turned out, in the scenario/JSON form.

import type { ErrnoCode } from '../shm/errno.js';
import { SandboxLimitError } from '../shm/limits.js';

export interface Outcome {
  /** 'ok', or the errno code ('EINVAL', ...), or the exit name for a guest access that exited. */
  result: string;
  value?: unknown;
  /** Set when a guest access exited instead of completing. */
  exit?: string;
  /** More about a failure (the populate errno behind LAUNCH_UPDATE's EIO, a limit hit, ...). */
  detail?: string;
}

/** Turns a thrown KvmError-like object into an outcome; anything else is rethrown. */
export function outcomeOfError(e: unknown): Outcome {
  if (e !== null && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string' && 'errno' in e) {
    const err = e as unknown as { code: ErrnoCode; populateError?: string; errorOffset?: number };
    return {
      result: err.code,
      ...(err.populateError ? { detail: `populate: ${err.populateError}` } : {}),
      ...(err.errorOffset !== undefined ? { value: { error_offset: err.errorOffset } } : {}),
    };
  }
  if (e instanceof SandboxLimitError) return { result: 'ELIMIT', detail: e.message };
  // A host access's signal (HostSignalError), an outcome of its own as an exit is.
  if (e instanceof Error && 'signal' in e && (e.signal === 'SIGBUS' || e.signal === 'SIGSEGV'))
    return { result: e.signal, detail: e.message };
  throw e;
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
