/**
 * Atomic file replacement: the target path holds either its old contents or the complete new contents, never a
 * partly written file.
 *
 * The data goes to a temporary file in the target's own directory (so the rename stays on one file system), is
 * flushed with fsync, renamed over the target, and then the directory is fsynced so the rename itself survives a
 * crash. If anything fails the temporary file is removed and the old target is left untouched.
 *
 * `fs` and `fsp` are used through their default objects (not named imports) so that tests can inject failures.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/**
 * What can be written: bytes, a string (written as UTF-8), or byte chunks written one after another: an array, or
 * any iterable (a generator makes each chunk only when it is written, so the file is never whole in memory).
 */
export type AtomicData = Uint8Array | string | Iterable<Uint8Array>;

/** Error codes from directory fsync on platforms or file systems that do not support it. */
const DIR_FSYNC_UNSUPPORTED = new Set(['EISDIR', 'EPERM', 'EINVAL', 'EACCES', 'ENOTSUP']);

/** Writes `data` to `path` atomically, creating the parent directories. */
export async function writeFileAtomic(path: string, data: AtomicData): Promise<void> {
  const chunks = toChunks(path, data);
  const dir = dirname(path);
  const tmp = tempPath(path);
  try {
    await fsp.mkdir(dir, { recursive: true });
    const handle = await fsp.open(tmp, 'wx');
    try {
      for (const chunk of chunks) {
        let written = 0;
        while (written < chunk.byteLength) {
          const { bytesWritten } = await handle.write(chunk, written, chunk.byteLength - written);
          written += bytesWritten;
        }
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw wrap(path, err);
  }
  await syncDirectory(dir);
}

/** Synchronous twin of {@link writeFileAtomic}. */
export function writeFileAtomicSync(path: string, data: AtomicData): void {
  const chunks = toChunks(path, data);
  const dir = dirname(path);
  const tmp = tempPath(path);
  try {
    fs.mkdirSync(dir, { recursive: true });
    const fd = fs.openSync(tmp, 'wx');
    try {
      for (const chunk of chunks) {
        let written = 0;
        while (written < chunk.byteLength) {
          written += fs.writeSync(fd, chunk, written, chunk.byteLength - written);
        }
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw wrap(path, err);
  }
  syncDirectorySync(dir);
}

/**
 * The data as byte chunks. A string, bytes or an array are checked up front (before any file is created); the chunks
 * of any other iterable are checked as they come (a bad one fails the write, and the temporary file is removed).
 */
function toChunks(path: string, data: AtomicData): Iterable<Uint8Array> {
  if (typeof data === 'string') return [Buffer.from(data, 'utf8')];
  if (data instanceof Uint8Array) return [data];
  const bad = (i: number) => new Error(`writeFileAtomic(${path}): chunk ${i} is not a Uint8Array`);
  if (Array.isArray(data)) {
    data.forEach((chunk, i) => {
      if (!(chunk instanceof Uint8Array)) throw bad(i);
    });
    return data;
  }
  if (data === null || typeof data !== 'object' || typeof (data as Iterable<Uint8Array>)[Symbol.iterator] !== 'function') {
    throw new Error(`writeFileAtomic(${path}): data must be a Uint8Array, a string or an iterable of Uint8Array`);
  }
  return (function* checked() {
    let i = 0;
    for (const chunk of data) {
      if (!(chunk instanceof Uint8Array)) throw bad(i);
      i++;
      yield chunk;
    }
  })();
}

/** A fresh name next to the target: hidden, with the process id and a random suffix so writers never collide. */
function tempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

function wrap(path: string, err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  return new Error(`writeFileAtomic(${path}): write failed, target left unchanged: ${message}`, { cause: err });
}

async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch (err) {
    if (!DIR_FSYNC_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) throw wrapDir(dir, err);
  } finally {
    await handle?.close();
  }
}

function syncDirectorySync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    if (!DIR_FSYNC_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) throw wrapDir(dir, err);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function wrapDir(dir: string, err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  return new Error(
    `writeFileAtomic: the file was renamed into place but fsync of directory ${dir} failed: ${message}`,
    { cause: err },
  );
}
