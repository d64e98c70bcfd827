// The hidden control directory at the mount root (`/.cachefs`): conflicts' variants as files
// any tool can open. Served by the mount process itself from the cache directory; nothing in
// it is ever sent to the backend.
import type { Conflict } from '../conflict/store.js';

export const CONTROL_DIR_NAME = '.cachefs';

/** What the control directory needs from the conflict store. */
export interface ConflictsView { list(): Conflict[] }

export class ControlDir {
  constructor(readonly deps: { conflicts: ConflictsView; cacheDir: string }) {}

  /** Whether a mount path is inside the control directory. */
  owns(p: string): boolean {
    return p === `/${CONTROL_DIR_NAME}` || p.startsWith(`/${CONTROL_DIR_NAME}/`);
  }
}
