// The machine's parallel ceiling, measured by the throughput group on one worker and then on
// two at once: 'chain' is a latency-bound integer loop (it scales whenever two hardware threads
// exist), 'fill' clears 4 KiB pages of a 256 KiB shared buffer that stays in the worker's L2
// (throughput-bound, as the fault path's clear is). Answers with its elapsed ms.

import { parentPort } from 'node:worker_threads';

export interface ComputeJob {
  kind: 'chain' | 'fill';
  iters: number;
}

const page = new Uint8Array(new SharedArrayBuffer(256 * 1024));

function chain(iters: number): number {
  let s = 1;
  for (let i = 0; i < iters; i++) s = (Math.imul(s, 1103515245) + 12345 + i) | 0;
  return s;
}

function fill(iters: number): number {
  for (let i = 0; i < iters; i++) {
    const at = (i & 63) * 4096;
    page.fill(i & 255, at, at + 4096);
  }
  return page[0];
}

if (parentPort !== null) {
  const port = parentPort;
  port.on('message', (job: ComputeJob) => {
    const t0 = performance.now();
    const s = job.kind === 'chain' ? chain(job.iters) : fill(job.iters);
    port.postMessage({ ms: performance.now() - t0, s });
  });
}
