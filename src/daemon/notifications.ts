// Turns what the mount's parts report (connectivity changes, conflicts found or resolved, the
// replayer's backlog) into mount events on one bus, for `cachefs watch`. The layer itself
// emits `cache-full`; everything else is wired here so the parts stay unaware of watchers.
//
// What must stay true:
// - nothing here waits or throws into the part that reported (listeners only emit);
// - while reintegrating, `progress` goes out at most every PROGRESS_MS and only when the
//   backlog changed, and once more when the reintegration ends if its last line was not
//   the final state: a reintegration that replayed anything shows at least one `progress`
//   line, and the last one (before `online`/`offline`) says what was left (0 if all went);
// - the ticker exists only while reintegrating and never keeps the process alive (unref).
import type { EventSink } from '../core/events.js';
import type { ConnSnapshot } from '../layers/connectivity.js';
import type { Conflict } from '../conflict/store.js';

export const PROGRESS_MS = 500;

/** What the wiring needs of the mount (narrow on purpose; the daemon passes the real parts). */
export interface NotificationSources {
  connectivity: { onChange(fn: (s: ConnSnapshot) => void): void };
  conflicts?: { onChange(fn: (c: Conflict) => void): void };
  /** Journal records waiting for the backend, and the data bytes they carry. */
  backlog(): { pending: number; bytes: number };
}

export interface Notifications {
  /** Stops the progress ticker (at shutdown). */
  stop(): void;
}

export function wireNotifications(src: NotificationSources, bus: EventSink): Notifications {
  let ticker: NodeJS.Timeout | null = null;
  let total = 0;
  let last = { pending: 0, bytes: 0 };

  const progress = (force: boolean): void => {
    const now = src.backlog();
    if (now.pending === last.pending && now.bytes === last.bytes && !force) return;
    // Changes made during the reintegration are journaled too: the total grows with them.
    total = Math.max(total, now.pending);
    last = now;
    bus.emit({ type: 'progress', pending: now.pending, bytes: now.bytes, total });
  };

  const stopTicker = (): void => {
    if (ticker) clearInterval(ticker);
    ticker = null;
  };

  src.connectivity.onChange((s) => {
    if (s.state === 'reintegrating') {
      const start = src.backlog();
      total = start.pending;
      last = start;
      bus.emit({ type: 'reintegrating', reason: s.reason, pending: start.pending });
      stopTicker();
      ticker = setInterval(() => progress(false), PROGRESS_MS);
      ticker.unref();
      return;
    }
    if (ticker) {
      // Leaving a reintegration: the last word on its backlog comes before the new state.
      stopTicker();
      progress(false);
    }
    if (s.state === 'disconnected') bus.emit({ type: 'offline', reason: s.reason });
    else bus.emit({ type: 'online', reason: s.reason });
  });

  // Conflicts announced as open by this process: their resolution is news (`resolved`).
  // Conflicts that arrive settled (an automatic rule, at detection) are one `conflict` line.
  const announcedOpen = new Set<number>();
  src.conflicts?.onChange((c) => {
    const base = { id: c.id, kind: c.kind, path: c.path };
    if (c.resolvedAt === null) {
      announcedOpen.add(c.id);
      bus.emit({ type: 'conflict', ...base, needsYou: true, resolution: null });
      return;
    }
    const wasOpen = announcedOpen.delete(c.id);
    // Never announced open, settled by a rule: at detection, or after a quiet try (the
    // store tells of such a conflict only once it is settled or known to need the user).
    if (!wasOpen && c.resolvedBy === 'auto') {
      bus.emit({ type: 'conflict', ...base, needsYou: false, resolution: c.resolution });
      return;
    }
    bus.emit({ type: 'resolved', ...base, resolution: c.resolution ?? 'resolved', by: c.resolvedBy ?? 'user' });
  });

  return { stop: stopTicker };
}
