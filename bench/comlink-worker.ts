// The comlink baseline: a worker exposing an empty method over the project's control-plane RPC.

import { exposeToParent } from '../src/shm/rpc.js';

exposeToParent({
  nop(): number {
    return 0;
  },
});
