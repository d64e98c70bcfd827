// A `cachefs watch --json` child process and the lines it printed, for tests of events.
import { spawn, type ChildProcess } from 'node:child_process';
import assert from 'node:assert/strict';
import { CLI, sleep } from './cachefs.js';

export interface WatchEvent { type: string; path?: string | null; message?: string }

export class Watcher {
  readonly lines: string[] = [];
  private partial = '';
  private readonly child: ChildProcess;
  constructor(mnt: string) {
    this.child = spawn(process.execPath, [CLI, 'watch', mnt, '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      const parts = (this.partial + d).split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
    });
  }
  events(): WatchEvent[] { return this.lines.map((l) => JSON.parse(l) as WatchEvent); }
  async waitFor(type: string, ms = 10_000): Promise<WatchEvent> {
    for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(25)) {
      const e = this.events().find((x) => x.type === type);
      if (e) return e;
    }
    assert.fail(`watcher: no ${type} event after ${ms} ms; got:\n${this.lines.join('\n')}`);
  }
  kill(): void { if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL'); }
}
