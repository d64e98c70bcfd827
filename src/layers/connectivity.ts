// The mount's connectivity state. "disconnected" means only that the replayer is paused and
// the backend is not asked; the mutation path is the same in every state (ARCHITECTURE §5).
export type ConnState = 'connected' | 'disconnected' | 'reintegrating';

export interface ConnSnapshot {
  state: ConnState;
  /** ms since the epoch when the current state began. */
  since: number;
  /** Why the mount is in this state. */
  reason: string;
}

export class Connectivity {
  private snap: ConnSnapshot = { state: 'connected', since: Date.now(), reason: 'mounted' };

  get state(): ConnState { return this.snap.state; }
  snapshot(): ConnSnapshot { return { ...this.snap }; }

  set(state: ConnState, reason: string): void {
    if (state === this.snap.state) return;
    this.snap = { state, since: Date.now(), reason };
  }

  /** Like set(), but also replaces the reason when the state stays the same. */
  force(state: ConnState, reason: string): void {
    this.snap = { state, since: state === this.snap.state ? this.snap.since : Date.now(), reason };
  }
}
