// The control plane: comlink over worker_threads message ports. Only start, stop, configure and
// collect travel this way; the data plane is Atomics on shared memory.

import { parentPort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeAdapter from 'comlink/dist/umd/node-adapter.js';
import type { Worker } from 'node:worker_threads';

// The UMD build's default export is the adapter function; its typings describe the module.
const nodeEndpoint = nodeAdapter as unknown as (nep: unknown) => Comlink.Endpoint;

/** Exposes `api` to the thread that started this worker. */
export function exposeToParent(api: object): void {
  if (parentPort === null) throw new Error('exposeToParent: not running in a worker thread');
  Comlink.expose(api, nodeEndpoint(parentPort));
}

/** A typed proxy to what a worker exposed. */
export function wrapWorker<T>(worker: Worker): Comlink.Remote<T> {
  return Comlink.wrap<T>(nodeEndpoint(worker));
}

export type Remote<T> = Comlink.Remote<T>;
