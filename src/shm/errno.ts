// Linux errno values the modelled paths return (as negative numbers, kernel style).

export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  ENOSPC: 28,
  ESPIPE: 29,
  ENOTTY: 25,
  E2BIG: 7,
  EOPNOTSUPP: 95,
  EHWPOISON: 133,
  EACCES: 13,
} as const;
export type ErrnoCode = keyof typeof Errno;

const BY_NUMBER: Record<number, ErrnoCode> = Object.fromEntries(Object.entries(Errno).map(([k, v]) => [v, k as ErrnoCode]));

export function errnoName(errno: number): ErrnoCode {
  const name = BY_NUMBER[Math.abs(errno)];
  if (name === undefined) throw new Error(`unknown errno ${errno}`);
  return name;
}
