// A tiny leveled logger. Library code logs through it and never prints directly; the mount
// process points it at its log file, the CLI leaves it on stderr.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

let threshold: number = ORDER[(process.env.CACHEFS_LOG as LogLevel) ?? 'info'] ?? ORDER.info;
let sink: (line: string) => void = (line) => process.stderr.write(line + '\n');

export function setLogLevel(level: LogLevel): void { threshold = ORDER[level]; }
export function setLogSink(fn: (line: string) => void): void { sink = fn; }

function emit(level: LogLevel, msg: string, extra?: unknown): void {
  if (ORDER[level] < threshold) return;
  let line = `${new Date().toISOString()} ${level.padEnd(5)} ${msg}`;
  if (extra !== undefined) {
    line += ' ' + (extra instanceof Error ? `${extra.name}: ${extra.message}` : safeJson(extra));
  }
  sink(line);
}

function safeJson(v: unknown): string {
  try { return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x)); } catch { return String(v); }
}

export const log = {
  debug: (m: string, x?: unknown) => emit('debug', m, x),
  info: (m: string, x?: unknown) => emit('info', m, x),
  warn: (m: string, x?: unknown) => emit('warn', m, x),
  error: (m: string, x?: unknown) => emit('error', m, x),
};
