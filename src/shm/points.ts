// The named points in the kernel paths where an actor can be held (pause points) and where the
// controlled scheduler may switch actors; and which other places are scheduling points of a
// controlled run (its points mode).

export const POINTS = [
  'fault.begin',
  'fault.before_get_pfn',
  'fault.after_get_pfn',
  'fault.before_mmu_lock',
  'get_pfn.after_grab',
  'get_pfn.before_prepare',
  'get_pfn.before_clear',
  'punch_hole.after_invalidate_begin',
  'punch_hole.after_truncate',
  'fallocate.after_grab',
  'populate.before_post_populate',
  'set_attributes.after_invalidate_begin',
  'firmware.before_command',
  'guest.before_access',
  'srcu.synchronize',
  'memslot.between_publishes',
  'get_pfn.after_get_file',
  'fput.before_release',
  'rmp.rmpupdate',
  'guest.in_access',
  'invalidate.binding_walk',
  'populate.after_pin_source',
  'host_fault.before_pte',
  'host_access.before_copy',
  'create_vcpu.unlocked',
  'sync_vmsa.before_copy',
  'set_attributes.after_ref_check',
] as const;
export type PointName = (typeof POINTS)[number];

export const P = Object.fromEntries(POINTS.map((n, i) => [n, i])) as { readonly [K in PointName]: number };

export function pointId(name: string): number {
  const i = (POINTS as readonly string[]).indexOf(name);
  if (i < 0) throw new Error(`unknown pause point '${name}'; known: ${POINTS.join(', ')}`);
  return i;
}

/**
 * The scheduling points of a controlled run besides the named ones: 'locks' (every lock, wait and
 * SRCU operation), or 'shared', which adds a point before every write to shared model state made
 * through its region's accessor (Sync.sharedWrite), as loom makes every atomic operation one. A
 * seed means one interleaving within one mode: a schedule records the mode it ran with.
 */
export const POINTS_MODES = ['locks', 'shared'] as const;
export type PointsMode = (typeof POINTS_MODES)[number];
export const DEFAULT_POINTS: PointsMode = 'locks';
