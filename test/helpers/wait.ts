// Waiting for a condition in tests, instead of a fixed sleep: poll until `cond` holds (or
// returns a value), and fail with `what` when it does not within the time given (a function:
// called then, to say what was still missing).
export async function waitUntil<T>(what: string | (() => string), cond: () => Promise<T | false | null | undefined> | T | false | null | undefined, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v !== false && v !== null && v !== undefined) return v as T;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
