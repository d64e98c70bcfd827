// Mount events: what a person (or a desktop notifier) following `cachefs watch` wants to
// hear about. The layer and the stores emit them; the daemon streams them to watchers.
// Emitting never fails and never waits: a slow or broken listener cannot hold up the mount.
import { log } from './log.js';

export type MountEvent =
  /** The mount stopped using the backend (connection lost, or `cachefs offline`). */
  | { type: 'offline'; reason: string }
  /** Reconnected: the journal is being replayed. */
  | { type: 'reintegrating'; reason: string; pending: number }
  /** Replay progress while reintegrating (records and bytes still to send). */
  | { type: 'progress'; pending: number; bytes: number; total: number }
  /** Connected again, journal replayed. */
  | { type: 'online'; reason: string }
  /** A conflict was found: open ones need the user; auto-resolved ones are for the record. */
  | { type: 'conflict'; id: number; kind: string; path: string; needsYou: boolean; resolution: string | null }
  /** A conflict was resolved (by the user, or by an automatic rule later). */
  | { type: 'resolved'; id: number; kind: string; path: string; resolution: string; by: 'auto' | 'user' }
  /**
   * The cache could not hold something (a write while disconnected failed with ENOSPC);
   * cause: which limit it met, when the emitter knows (the hint `cachefs watch` gives differs).
   */
  | { type: 'cache-full'; path: string | null; message: string; cause?: CacheLimit };

/**
 * What keeps the cache from taking more: its size limit (culling.maxBytes: evict, unpin or
 * raise it), or the free space of its disk (bstop/fstop and the index reserve: free space there).
 */
export type CacheLimit = 'maxBytes' | 'disk';

export type StampedEvent = MountEvent & { at: string };

/** What an emitter needs (narrow on purpose: the layer knows nothing of sockets). */
export interface EventSink { emit(e: MountEvent): void }

export class EventBus implements EventSink {
  private readonly listeners = new Set<(e: StampedEvent) => void>();

  emit(e: MountEvent): void {
    const stamped = { ...e, at: new Date().toISOString() } as StampedEvent;
    for (const fn of this.listeners) {
      try { fn(stamped); } catch (err) { log.warn('an event listener failed', err); }
    }
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(fn: (e: StampedEvent) => void): () => void {
    this.listeners.add(fn);
    return () => { this.listeners.delete(fn); };
  }

  get listenerCount(): number { return this.listeners.size; }
}
