// name_to_handle_at(2) and open_by_handle_at(2) for tests (Node has neither), through koffi.
// What an NFS server re-exporting the mount, or fanotify, does with a file's handle.
import koffi from 'koffi';
import fs from 'node:fs';
import { errnoName } from '../../src/core/errors.js';

const libc = koffi.load('libc.so.6');
const nameToHandleAt = libc.func('int name_to_handle_at(int dirfd, const char *path, uint8_t *handle, _Out_ int *mount_id, int flags)');
const openByHandleAt = libc.func('int open_by_handle_at(int mount_fd, uint8_t *handle, int flags)');
const AT_FDCWD = -100;
const MAX_HANDLE = 128;

/** The handle of `path` (struct file_handle: its size, type and bytes). */
export function handleOf(path: string): Buffer {
  const h = Buffer.alloc(8 + MAX_HANDLE);
  h.writeUInt32LE(MAX_HANDLE, 0);
  const mountId = [0];
  if (nameToHandleAt(AT_FDCWD, path, h, mountId, 0) !== 0) throw errnoError('name_to_handle_at', path);
  return h.subarray(0, 8 + h.readUInt32LE(0));
}

/** Opens the file `handle` names in the mount `mountFd` is on; throws with the errno's code. */
export function openByHandle(mountFd: number, handle: Buffer, flags = fs.constants.O_RDONLY): number {
  const fd = openByHandleAt(mountFd, Buffer.from(handle), flags) as number;
  if (fd < 0) throw errnoError('open_by_handle_at', '');
  return fd;
}

function errnoError(call: string, path: string): NodeJS.ErrnoException {
  const n = koffi.errno();
  const code = errnoName(n) ?? `errno ${n}`;
  const e = new Error(`${call}(${path}): ${code}`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}
