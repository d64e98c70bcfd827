// Paths below the local backend's root, as its tables key them ('' is the root itself,
// components joined by '/'): what a rename or a removal of `rel` touches.

/** Whether `k` is `rel` or lies below it (everything is below the root). */
export function atOrBelow(k: string, rel: string): boolean {
  return rel === '' || k === rel || k.startsWith(rel + '/');
}

/** `k`, at or below `from`, once `from` is renamed to `to`. */
export function rebased(k: string, from: string, to: string): string {
  return to + k.slice(from.length);
}
