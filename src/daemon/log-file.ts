// The mount process's log file (cachefs.log in the cache directory). It lives on the cache
// disk, which may be full: a line that cannot be written is dropped (and counted), never
// thrown, since a write stream's unhandled 'error' would end the process. After a failure the
// file is opened again on the first line RETRY_MS later, and that line says how many were lost.
import { createWriteStream, type WriteStream } from 'node:fs';

const RETRY_MS = 1000;

export class LogFile {
  private stream: WriteStream;
  /** When writing last failed (0: it did not), why, and the lines dropped since. */
  private failedAt = 0;
  private why = '';
  private dropped = 0;

  constructor(private readonly file: string) {
    this.stream = this.open();
  }

  private open(): WriteStream {
    const s = createWriteStream(this.file, { flags: 'a', mode: 0o600 });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (s !== this.stream) return;
      if (!this.failedAt) this.why = e.code ?? e.message;
      this.failedAt = Date.now();
    });
    return s;
  }

  write(line: string): void {
    if (this.failedAt) {
      if (Date.now() - this.failedAt < RETRY_MS) { this.dropped++; return; }
      const lost = this.dropped;
      const why = this.why;
      this.failedAt = 0;
      this.dropped = 0;
      this.stream.destroy();
      this.stream = this.open();
      if (lost > 0) this.stream.write(`${new Date().toISOString()} warn  ${lost} log line(s) were lost: the log file could not be written (${why})\n`);
    }
    this.stream.write(line + '\n');
  }

  /** Writes what is buffered and closes the file (resolves even if it cannot). */
  close(): Promise<void> {
    const s = this.stream;
    return new Promise((resolve) => {
      if (s.destroyed || this.failedAt) { s.destroy(); resolve(); return; }
      s.once('close', () => resolve()); // after the last write, or after a failure
      s.end();
    });
  }
}
