/**
 * Atomic file replacement: the target path holds either its old contents or the complete new contents, never a
 * partly written file.
 *
 * The data goes to a temporary file in the target's own directory (so the rename stays on one file system), is
 * flushed with fsync, renamed over the target, and then the directory is fsynced so the rename itself survives a
 * crash. If anything fails the temporary file is removed and the old target is left untouched. A file replaced keeps
 * its permission bits; a symbolic link to a file stays a link and that file is replaced (a link to nothing is
 * replaced by the file); a folder, and a device, pipe or socket (which the rename would replace), are refused.
 *
 * `fs` and `fsp` are used through their default objects (not named imports) so that tests can inject failures.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { expectString } from '../check.js';

/**
 * What can be written: bytes, a string (written as UTF-8), or byte chunks written one after another: an array, or
 * any iterable (a generator makes each chunk only when it is written, so the file is never whole in memory).
 */
export type AtomicData = Uint8Array | string | Iterable<Uint8Array>;

/** The longest file name, in bytes, that the file systems of Linux and macOS take. */
const NAME_MAX = 255;

/** Error codes from directory fsync on platforms or file systems that do not support it. */
const DIR_FSYNC_UNSUPPORTED = new Set(['EISDIR', 'EPERM', 'EINVAL', 'EACCES', 'ENOTSUP']);

/**
 * Creates the folder `dir` and any missing parents, one at a time. Node's own recursive mkdir never returns where a
 * file system answers ENOENT for a parent that exists (a new folder under /proc): here that is the error it is.
 */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !fs.existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  if (missing.length === 0 && !fs.statSync(dir).isDirectory()) throw new Error(`cannot create the folder ${dir}: a file of that name exists`);
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

/**
 * Refuses an output folder that this process cannot write in, or cannot make (its nearest existing parent is not
 * writable, or is no folder: a file, a link to nothing), naming it: said as such before any work, not later as the
 * write error of a file in it. Reads only.
 */
export function checkWritableFolder(job: string, outDir: string): void {
  const out = resolve(outDir);
  const stat = (p: string, f: typeof fs.statSync) => {
    try {
      return f(p);
    } catch {
      return undefined; // ENOENT, or ENOTDIR under a file, ELOOP
    }
  };
  // the nearest path that is there, a link to nothing included (it stands where a folder would be made)
  let d = out;
  while (stat(d, fs.lstatSync) === undefined && dirname(d) !== d) d = dirname(d);
  if (!stat(d, fs.statSync)?.isDirectory()) {
    const why = d === out ? 'is not a folder' : `cannot be made: ${d} is not a folder`;
    throw new Error(`${job}: the output folder ${outDir} ${why}; choose another folder (--out)`);
  }
  try {
    fs.accessSync(d, fs.constants.W_OK);
  } catch {
    const why = d === out ? 'is not writable' : `cannot be made: ${d} is not writable`;
    throw new Error(`${job}: the output folder ${outDir} ${why}; choose another folder (--out)`);
  }
}

/** Writes `data` to `path` atomically, creating the parent directories. */
export async function writeFileAtomic(path: string, data: AtomicData): Promise<void> {
  const chunks = toChunks(path, data);
  const file = await AtomicFileWriter.open(path);
  try {
    for (const chunk of chunks) await file.write(chunk);
  } catch (err) {
    await file.abort();
    throw err instanceof Error && err.message.startsWith(`writeFileAtomic(${path})`) ? err : wrap(path, err);
  }
  await file.commit();
}

/** Synchronous twin of {@link writeFileAtomic}. */
export function writeFileAtomicSync(path: string, data: AtomicData): void {
  const chunks = toChunks(path, data);
  let dest = path;
  let tmp = '';
  try {
    const t = target(path);
    dest = t.path;
    makeDirs(dirname(dest));
    tmp = tempPath(dest);
    const fd = fs.openSync(tmp, 'wx', t.mode ?? 0o666);
    try {
      if (t.mode !== null) {
        try {
          fs.fchmodSync(fd, t.mode);
        } catch {
          // a file system that takes no chmod keeps what open gave
        }
      }
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
    fs.renameSync(tmp, dest);
  } catch (err) {
    if (tmp) fs.rmSync(tmp, { force: true });
    throw wrap(path, err);
  }
  syncDirectorySync(dirname(dest));
}

/**
 * A file written in pieces (too large to hold in memory at once) and put in place atomically: the pieces go to a
 * temporary file next to `path`; commit() fsyncs it, renames it over `path` and fsyncs the directory; abort() removes
 * it. Until commit() returns, `path` keeps its old contents (or stays absent). A crash leaves at most the hidden
 * temporary file `.<name>.<pid>.<random>.tmp` (see tempPath for a long name).
 */
export class AtomicFileWriter {
  readonly path: string;
  /** where the file goes: `path`, or the file a symbolic link at `path` points to */
  private readonly dest: string;
  private readonly tmp: string;
  private readonly handle: FileHandle;
  private written = 0;
  private done = false;

  private constructor(path: string, dest: string, tmp: string, handle: FileHandle) {
    this.path = path;
    this.dest = dest;
    this.tmp = tmp;
    this.handle = handle;
  }

  /** Starts writing `path` (its parent folders are created). */
  static async open(path: string): Promise<AtomicFileWriter> {
    let tmp = '';
    try {
      const t = target(path);
      makeDirs(dirname(t.path));
      tmp = tempPath(t.path);
      const handle = await fsp.open(tmp, 'wx', t.mode ?? 0o666);
      // open's mode is cut by the umask; a file system that takes no chmod keeps what open gave
      if (t.mode !== null) await handle.chmod(t.mode).catch(() => {});
      return new AtomicFileWriter(path, t.path, tmp, handle);
    } catch (err) {
      if (tmp) await fsp.rm(tmp, { force: true });
      throw wrap(path, err);
    }
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.done) throw new Error(`AtomicFileWriter(${this.path}): write after commit or abort`);
    try {
      for (let at = 0; at < chunk.byteLength; ) at += (await this.handle.write(chunk, at, chunk.byteLength - at)).bytesWritten;
    } catch (err) {
      await this.abort();
      throw wrap(this.path, err);
    }
    this.written += chunk.byteLength;
  }

  async commit(): Promise<void> {
    if (this.done) throw new Error(`AtomicFileWriter(${this.path}): commit after commit or abort`);
    this.done = true;
    try {
      await this.handle.sync();
      await this.handle.close();
      await fsp.rename(this.tmp, this.dest);
    } catch (err) {
      await this.handle.close().catch(() => {});
      await fsp.rm(this.tmp, { force: true });
      throw wrap(this.path, err);
    }
    await syncDirectory(dirname(this.dest));
  }

  /** Drops what was written; `path` is left as it was. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.handle.close().catch(() => {});
    await fsp.rm(this.tmp, { force: true });
  }
}

/**
 * Where a write of `path` goes, and the permission bits to keep: an existing file keeps its mode (the temporary file
 * would get the default's), a symbolic link stays and its file is replaced, a folder is refused before anything is
 * written.
 */
function target(path: string): { path: string; mode: number | null } {
  const bytes = Buffer.byteLength(basename(path));
  if (bytes > NAME_MAX) throw new Error(`the file name of ${path} is ${bytes} bytes, longer than the ${NAME_MAX} a file system takes`);
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch {
    return { path, mode: null }; // absent (or a link to nothing): a new file
  }
  if (st.isDirectory()) throw new Error(`${path} is a folder: give the path of a file`);
  // the rename would replace the device or pipe itself (as root, /dev/null became a regular file)
  if (!st.isFile()) throw new Error(`${path} is not a regular file (a device, pipe or socket): give the path of a file`);
  return { path: destination(path), mode: st.mode & 0o7777 };
}

/** The file a write of `path` replaces: the file a symbolic link at `path` points to, else `path` itself. */
function destination(path: string): string {
  try {
    return fs.lstatSync(path).isSymbolicLink() ? fs.realpathSync(path) : path;
  } catch {
    return path; // absent, or a link to nothing (replaced by the file)
  }
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

/**
 * Removes the temporary files of writes of `path` that a process killed mid-write left behind (the process named in
 * the file's name no longer runs); those of live processes are left alone. Every file this library writes
 * (saveCheckpoint, saveClassifier, saveSafetensors, writePng, ...) goes first to such a hidden file beside it,
 * `.<name>.<pid>.<random>.tmp`; pretrain, finetune and linprobe call this for their own files when they start. The
 * files lie beside the file written: for a symbolic link, the file it points to. Returns the paths removed.
 */
export function removeStaleTemps(path: string): string[] {
  expectString('removeStaleTemps', 'path', path, 'a file path');
  const written = destination(path);
  const dir = dirname(written);
  // either form of tempPath: the name whole, or cut short
  const names = [basename(written), shortName(basename(written))];
  const removed: string[] = [];
  for (const file of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const t = parseTempName(file);
    if (!t || !names.includes(t.name)) continue;
    const temp = join(dir, file);
    let mtimeMs: number;
    try {
      mtimeMs = fs.statSync(temp).mtimeMs;
    } catch {
      continue; // gone meanwhile
    }
    if (!madeByEndedProcess(t.pid, mtimeMs)) continue;
    fs.rmSync(temp, { force: true });
    removed.push(temp);
  }
  return removed;
}

/**
 * Removes the temporary files of writes into `dir` (not its sub-folders) that this process made: those of a writer
 * ended mid-write while the process goes on (a worker thread terminated: pretrainInWorker's, when its onEvent threw),
 * which removeStaleTemps keeps since their process still runs. Only for a folder where no other write of this process
 * can be under way (a run folder whose lock that writer held). Returns the paths removed. Never throws (it runs in
 * exit handlers): a file that cannot be removed stays, for removeStaleTemps once this process has ended.
 */
export function removeOwnTemps(dir: string): string[] {
  const removed: string[] = [];
  let files: string[];
  try {
    files = fs.readdirSync(dir);
  } catch {
    return removed; // no folder (or none to read): nothing was written there
  }
  for (const file of files) {
    if (parseTempName(file)?.pid !== process.pid) continue;
    try {
      fs.rmSync(join(dir, file), { force: true });
      removed.push(join(dir, file));
    } catch {
      // stays
    }
  }
  return removed;
}

/**
 * The names of the files in `dir` that temporary files of writes (tempPath, the name whole) are there for, once each:
 * files of a folder whose names are not known in advance (figures), to give removeStaleTemps.
 */
export function tempTargets(dir: string): string[] {
  const files = fs.existsSync(dir) && fs.statSync(dir).isDirectory() ? fs.readdirSync(dir) : [];
  return [...new Set(files.flatMap((f) => parseTempName(f)?.name ?? []))];
}

/** A temporary file's name, `.<name>.<pid>.<12 hex digits>.tmp` (tempPath): the name and the pid; null for another. */
function parseTempName(file: string): { name: string; pid: number } | null {
  const m = /^\.(.+)\.(\d+)\.[0-9a-f]{12}\.tmp$/.exec(file);
  return m ? { name: m[1]!, pid: Number(m[2]) } : null;
}

/**
 * Whether the process `pid` that made a file (a temporary file, a run's lock) last modified at `mtimeMs` has ended:
 * another pid that no longer runs, or this process's own pid in a file older than this process (one of a killed
 * process that had the same pid before it: a container's first process, restarted); a file of this process's own
 * made since it started (by any of its threads) is not.
 */
export function madeByEndedProcess(pid: number, mtimeMs: number): boolean {
  return pid === process.pid ? mtimeMs < performance.timeOrigin : !isRunning(pid);
}

/**
 * Whether process `pid` runs on this machine (one of another user's counts). A zombie (ended, not yet reaped by its
 * parent: a rank of a job mpirun has just ended, for a moment) does not.
 */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (!fs.existsSync('/proc/self/stat')) return true; // no /proc (macOS): kill's answer stands
  try {
    // "pid (name) state ...", the name in parentheses possibly holding any character
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false; // gone since
  }
}

/**
 * A fresh name next to the target: hidden, with the process id and a random suffix so writers never collide:
 * `.<name>.<pid>.<random>.tmp`, or, where that is longer than NAME_MAX, the same with the name cut short (shortName).
 */
function tempPath(path: string): string {
  const end = `.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const whole = `.${basename(path)}${end}`;
  return join(dirname(path), Buffer.byteLength(whole) <= NAME_MAX ? whole : `.${shortName(basename(path))}${end}`);
}

/**
 * A file name cut to at most 226 bytes, so that a temporary name made of it fits NAME_MAX with a pid of up to 10
 * digits: its first 209 bytes (whole characters), `~` and 16 hex digits of its SHA-256, which tell it apart from the
 * other long names that start with the same 209 bytes.
 */
function shortName(name: string): string {
  let head = '';
  for (const ch of name) {
    if (Buffer.byteLength(head + ch) > 209) break;
    head += ch;
  }
  return `${head}~${createHash('sha256').update(name).digest('hex').slice(0, 16)}`;
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
