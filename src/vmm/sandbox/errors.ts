// Errors a user of the library sees.

import { Errno, type ErrnoCode, errnoName } from '../../shm/errno.js';

/** A refused ioctl or syscall, with the errno the kernel would return. */
export class KvmError extends Error {
  readonly code: ErrnoCode;
  readonly errno: number;
  constructor(
    readonly op: string,
    errno: number,
    detail?: string,
    /** For an ioctl that reports a wrapped error (LAUNCH_UPDATE returns EIO): the inner errno. */
    readonly populateError?: ErrnoCode,
    /** For SEV commands: the firmware status (argp->error). */
    readonly fwError?: number,
    /** KVM_SET_MEMORY_ATTRIBUTES2's error_offset (bytes), written back with EAGAIN and ENOMEM. */
    readonly errorOffset?: number,
  ) {
    const code = errnoName(errno);
    const at = errorOffset !== undefined ? ` (error_offset ${errorOffset})` : '';
    super(`${op}: ${code}${populateError ? ` (populate: ${populateError})` : ''}${at}${detail ? `: ${detail}` : ''}`);
    this.name = 'KvmError';
    this.code = code;
    this.errno = Errno[code];
  }
}

/** Throws a KvmError for a negative return, else passes the value through. */
export function check(op: string, r: number, detail?: string): number {
  if (r < 0) throw new KvmError(op, r, detail);
  return r;
}

/** A bad argument to the library itself (wrong type, unknown name): names the field and the rule. */
export class ArgumentError extends Error {
  constructor(
    readonly field: string,
    readonly rule: string,
  ) {
    super(`${field}: ${rule}`);
    this.name = 'ArgumentError';
  }
}

/**
 * A call on a sandbox (or a threaded runtime) after close() or shutdown(): refused at once, with
 * nothing changed, instead of acting on freed state or waiting on threads that are gone.
 */
export class SandboxClosedError extends Error {
  constructor(
    /** The refused call, e.g. 'Vm.createGuestMemfd' or 'Runtime.call(vmm)'. */
    readonly call: string,
    readonly by: 'close' | 'shutdown',
  ) {
    super(`${call}: the ${by === 'close' ? 'sandbox is closed' : 'runtime is shut down'}`);
    this.name = 'SandboxClosedError';
  }
}

/**
 * A host access through a guest_memfd mapping that the process would take a signal for:
 * SIGBUS (the fault cannot map the page: past the file's end, memory not shared, a poisoned
 * page) or SIGSEGV (no mapping there), at `offset`; the bytes before its page were moved, as
 * memset gets that far.
 */
export class HostSignalError extends Error {
  constructor(
    readonly op: string,
    readonly signal: 'SIGBUS' | 'SIGSEGV',
    readonly offset: number,
  ) {
    super(`${op}: ${signal} at offset ${offset} of the mapping`);
    this.name = 'HostSignalError';
  }
}
