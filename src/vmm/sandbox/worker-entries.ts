// The sandbox's worker threads and their entry files. `npm run build` also bundles each entry
// into one file (scripts/bundle-workers.mjs): a thread then loads one module instead of about a
// hundred, and starts in a third of the time (8 vCPU threads: 160 ms instead of 440 on 2 cores).

/** Entry under dist/ (as tsc writes it) -> its bundle under dist/. */
export const WORKER_BUNDLES: Readonly<Record<string, string>> = {
  'src/firmware/worker.js': 'workers/firmware.js',
  'src/vmm/sandbox/vmm-worker.js': 'workers/vmm.js',
  'src/vcpu-workers/worker.js': 'workers/vcpu.js',
};

/** Set to 1 to run the modules tsc wrote instead of the bundles (stack traces name their files). */
export const WORKER_MODULES_ENV = 'GMEM_WORKER_MODULES';
