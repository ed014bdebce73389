// Reads a text file line by line in 1 MiB chunks, with each line's byte offset and length, so a
// caller can keep where a line is instead of the line (sweep merges of a million lines). Yields
// to the event loop per chunk, so a signal is answered while a large file is read.

import { open } from 'node:fs/promises';

export type OnLine = (text: string, line: number, offset: number, length: number) => void;

export async function forEachLine(path: string, onLine: OnLine, signal?: AbortSignal): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    let carry = Buffer.alloc(0);
    let carryOffset = 0;
    let pos = 0;
    let line = 0;
    const emit = (chunk: Buffer, start: number, end: number, base: number): void => {
      const stop = end > start && chunk[end - 1] === 13 ? end - 1 : end;
      onLine(chunk.toString('utf8', start, stop), ++line, base + start, stop - start);
    };
    for (;;) {
      signal?.throwIfAborted();
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      const chunk = carry.length > 0 ? Buffer.concat([carry, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
      const base = carry.length > 0 ? carryOffset : pos;
      pos += bytesRead;
      let start = 0;
      for (let nl = chunk.indexOf(10, start); nl >= 0; nl = chunk.indexOf(10, start)) {
        emit(chunk, start, nl, base);
        start = nl + 1;
      }
      // The buffer is reused by the next read: an unfinished line is copied out.
      carry = Buffer.from(chunk.subarray(start));
      carryOffset = base + start;
    }
    if (carry.length > 0) emit(carry, 0, carry.length, carryOffset);
  } finally {
    await fh.close();
  }
}
