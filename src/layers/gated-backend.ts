// The gate every backend call of the layer goes through (ARCHITECTURE §6, invariant 5).
// What it guarantees:
// - at most `concurrency` calls are at the backend at once (one queue for the whole mount);
// - every call that goes out has a deadline (`timeoutMs`), so none waits for a dead server
//   longer than that, at most 10 s: no application waits longer;
// - disconnected, no call goes out at all: it fails at once with EHOSTUNREACH, and so do
//   calls still queued when the connection went (checked again as they leave the queue);
// - a call that fails with a connection error (a deadline missed included) reports the
//   connection lost, which switches the mount to disconnected.
// The probe that looks for the backend while disconnected must bypass this gate (reconnect.ts).
import PQueue from 'p-queue';
import { FsError } from '../core/errors.js';
import { withDeadline } from '../core/deadline.js';
import { isConnectionError } from '../journal/replayer.js';
import type { BackendCall } from '../backends/types.js';
import type { Connectivity } from './connectivity.js';

/** What the gate needs; the cache layer wires it. */
export interface GateDeps {
  connectivity: Pick<Connectivity, 'state' | 'snapshot'>;
  /** Backend calls at once (cache.backendConcurrency). */
  concurrency: number;
  /** Deadline of one call, ms (backendTimeoutMs). */
  timeoutMs: number;
  /** Counts every call that really goes out (the layer's status counters). */
  counters: { backendCalls: number };
  /** A call failed with a connection error: `reason` says which call and why. */
  onConnectionLost(reason: string): void;
}

export class GatedBackend {
  /** Runs `fn` (a call to the backend) through the gate; `what` names it in errors. */
  readonly call: BackendCall;
  private readonly queue: PQueue;

  constructor(d: GateDeps) {
    this.queue = new PQueue({ concurrency: d.concurrency });
    const unreachable = (what: string) => new FsError('EHOSTUNREACH', `${what}: the backend is unreachable (${d.connectivity.snapshot().reason})`);
    this.call = <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      // Disconnected: the backend is not asked at all, so nothing waits for a dead server;
      // calls still queued when the connection goes fail as they come out of the queue.
      if (d.connectivity.state === 'disconnected') return Promise.reject(unreachable(what));
      const p = this.queue.add(() => {
        if (d.connectivity.state === 'disconnected') return Promise.reject(unreachable(what));
        d.counters.backendCalls++;
        return withDeadline(fn(), d.timeoutMs, `backend ${what}`);
      }, { throwOnTimeout: true }) as Promise<T>;
      return p.catch((e: unknown) => {
        if (isConnectionError(e)) {
          const msg = (e as Error).message;
          const code = (e as FsError).code;
          d.onConnectionLost(`${what}: ${msg.includes(code) ? msg : `${code}: ${msg}`}`);
        }
        throw e;
      });
    };
  }

  /** Resolves once no call is queued or at the backend (unmount waits for it). */
  idle(): Promise<void> {
    return this.queue.onIdle();
  }
}
