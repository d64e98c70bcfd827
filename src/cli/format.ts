// Human-readable numbers, times and events for CLI output.
import type { CacheLimit } from '../core/events.js';
import type { WatchEvent } from '../daemon/protocol.js';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** A local time as `2026-11-22 10:01:02` (from an ISO string; shown as is if unreadable). */
export function formatLocalTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** What to do about a cache-full event, by the limit the write met. */
const CACHE_FULL_HINT: Record<CacheLimit | 'unknown', string> = {
  maxBytes: 'the cache is at its size limit (culling.maxBytes); make room with `cachefs evict` or `cachefs unpin` '
    + '(or `cachefs sync` once connected: replayed data can be culled), or raise culling.maxBytes in the config and remount',
  disk: 'the cache disk is full; free space on it (or `cachefs evict` / `cachefs unpin` what the cache holds)',
  unknown: 'make room with `cachefs evict` or `cachefs unpin`; if the cache is at culling.maxBytes raise it, '
    + 'if its disk is full free space there (`cachefs status` shows both)',
};

/**
 * One `cachefs watch` event for people: local time, the event type in a column, and a
 * sentence that says what it means and, where the user has something to do, how.
 */
export function formatWatchEvent(e: WatchEvent, mountpoint: string): string {
  const changes = (n: number) => (n === 0 ? 'no pending changes' : `${n} change(s) safe in the journal`);
  let text: string;
  switch (e.type) {
    case 'state':
      text = `${e.state} since ${formatLocalTime(e.since)} (${e.reason}); ${changes(e.pending)}`
        + (e.bytes > 0 ? `, ${formatBytes(e.bytes)} of data` : '')
        + `; ${e.conflicts === 0 ? 'no conflicts' : `${e.conflicts} conflict(s) need you: cachefs conflicts ${mountpoint}`}`;
      break;
    case 'offline': text = `${e.reason}; working from the cache, changes wait in the journal`; break;
    case 'reintegrating': text = `${e.reason}; replaying ${e.pending} change(s) to the backend`; break;
    case 'progress':
      text = `${e.total - Math.min(e.pending, e.total)} of ${e.total} change(s) replayed, ${e.pending} left`
        + (e.bytes > 0 ? ` (${formatBytes(e.bytes)} to send)` : '');
      break;
    case 'online': text = `${e.reason}; connected to the backend`; break;
    case 'conflict':
      text = `${e.id} (${e.kind}) on ${e.path} ` + (e.needsYou
        ? `needs you: cachefs conflicts ${mountpoint} --show ${e.id}`
        : `settled automatically (${e.resolution ?? 'resolved'})`);
      break;
    case 'resolved':
      text = `${e.id} (${e.kind}) on ${e.path}: ${e.resolution}${e.by === 'auto' ? ', automatically' : ''}`;
      break;
    case 'cache-full':
      text = `${e.path ?? 'a change'}: ${e.message}; that write was refused (the journal is intact): ${CACHE_FULL_HINT[e.cause ?? 'unknown']}`;
      break;
    case 'missed': text = `${e.count} event(s) not shown: this watcher read too slowly`; break;
    case 'unmounted': text = `${mountpoint} (${e.reason})`; break;
  }
  return `${formatLocalTime(e.at)}  ${e.type.padEnd(13)} ${text}`;
}
