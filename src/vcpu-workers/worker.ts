// A vCPU thread's entry (Runtime starts it from dist/): serves the vCPU API (api.ts) to the
// controller. Tests start test/workers/vcpu-test-worker.ts instead, which adds their hooks.

import { exposeToParent } from '../shm/rpc.js';
import { VcpuWorker } from './api.js';

exposeToParent(new VcpuWorker());
