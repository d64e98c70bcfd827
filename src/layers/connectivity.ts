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
  private readonly listeners: ((s: ConnSnapshot) => void)[] = [];

  /** Called after every change of state (not for a new reason in the same state). */
  onChange(fn: (s: ConnSnapshot) => void): void { this.listeners.push(fn); }

  private changed(): void {
    for (const fn of this.listeners) { try { fn(this.snapshot()); } catch { /* never breaks a state change */ } }
  }

  get state(): ConnState { return this.snap.state; }
  snapshot(): ConnSnapshot { return { ...this.snap }; }

  set(state: ConnState, reason: string): void {
    if (state === this.snap.state) return;
    this.snap = { state, since: Date.now(), reason };
    this.changed();
  }

  /** Like set(), but also replaces the reason when the state stays the same. */
  force(state: ConnState, reason: string): void {
    const moved = state !== this.snap.state;
    this.snap = { state, since: moved ? Date.now() : this.snap.since, reason };
    if (moved) this.changed();
  }
}
