// Which handlers answer a request: the control directory's (./control-ops.ts) or the
// cache's (./ops.ts). Decided here, once per request, and nowhere else.
//
// A request belongs to the control directory when it names a control node (its node id, a
// rename's new directory, a link's old node), or names `.cachefs` in the root (the control
// directory shadows a backend name `.cachefs`). Requests the control handlers do not take
// (STATFS, FSYNCDIR…) go to the cache's handlers whatever they name.
import { CONTROL_DIR_NAME } from '../core/names.js';
import { FsError } from '../core/errors.js';
import { Op, namedIn } from './protocol.js';
import type { NodeTable } from './nodes.js';
import type { Handler, Request } from './session.js';
import type { ControlDir } from '../layers/control-dir.js';
import { makeHandlers, type OpsDeps } from './ops.js';
import { makeControlHandlers } from './control-ops.js';

type Handlers = Partial<Record<number, Handler>>;

export function routeControl(objects: Handlers, control: Handlers, nodes: NodeTable): Handlers {
  const isCtlNode = (n: bigint) => nodes.ref(n)?.kind === 'ctl';
  const toControl = (req: Request): boolean => {
    if (!control[req.h.opcode]) return false;
    if (isCtlNode(req.h.nodeid)) return true;
    // Only a name in the root, or a second node (a rename's new directory, a link's old
    // node), can lead there: the hot path (a LOOKUP in any other directory) reads no name.
    const op = req.h.opcode;
    if (req.h.nodeid !== 1n && op !== Op.RENAME && op !== Op.RENAME2 && op !== Op.LINK) return false;
    let named;
    try {
      named = namedIn(op, req.body.ahead());
    } catch {
      return false; // malformed: the cache's handler refuses it (EINVAL) as it reads it
    }
    if (!named) return false;
    if (req.h.nodeid === 1n && named.names.includes(CONTROL_DIR_NAME)) return true;
    if (named.newdir === 1n && named.newname === CONTROL_DIR_NAME) return true;
    return named.nodes.some(isCtlNode);
  };
  const out: Handlers = {};
  for (const op of new Set([...Object.keys(objects), ...Object.keys(control)].map(Number))) {
    const obj = objects[op];
    const ctl = control[op];
    out[op] = (req) => {
      const fn = toControl(req) ? ctl : obj;
      if (!fn) throw new FsError('ENOSYS', `opcode ${op} is not served here`);
      return fn(req);
    };
  }
  return out;
}

/** Every handler of a mount: the cache's, and the control directory's when there is one. */
export function fuseHandlers(d: Omit<OpsDeps, 'hiddenInRoot'> & { control?: ControlDir }): Handlers {
  const { control, ...rest } = d;
  if (!control) return makeHandlers(rest);
  const objects = makeHandlers({ ...rest, hiddenInRoot: (name) => control.hides(name) });
  return routeControl(objects, makeControlHandlers(control, d.nodes, d.controlTimeouts), d.nodes);
}
