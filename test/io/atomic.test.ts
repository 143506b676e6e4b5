// Tests for lib/io/atomic.ts: contents, parent directories, no leftover temp files, and that failures (injected into
// the fs calls the module uses) leave the old target intact.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { AtomicFileWriter, checkWritableFolder, isRunning, makeDirs, removeStaleTemps, writeFileAtomic, writeFileAtomicSync } from '../../lib/io/atomic.js';
import { endedPid } from '../helpers/processes.js';

let root: string;
let n = 0;
beforeAll(async () => {
  root = await fsp.mkdtemp(join(tmpdir(), 'mae-atomic-'));
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** A fresh empty directory per test. */
async function freshDir(): Promise<string> {
  const dir = join(root, `t${n++}`);
  await fsp.mkdir(dir);
  return dir;
}

describe('writeFileAtomic', () => {
  it('writes bytes, strings and chunk lists, creating parent directories, leaving no temp file', async () => {
    const dir = await freshDir();
    const path = join(dir, 'a', 'b', 'out.bin');
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    expect(new Uint8Array(await fsp.readFile(path))).toEqual(new Uint8Array([1, 2, 3]));
    await writeFileAtomic(path, 'héllo');
    expect(await fsp.readFile(path, 'utf8')).toBe('héllo');
    await writeFileAtomic(path, [new Uint8Array([9]), new Uint8Array(0), new Uint8Array([8, 7])]);
    expect(new Uint8Array(await fsp.readFile(path))).toEqual(new Uint8Array([9, 8, 7]));
    expect(await fsp.readdir(join(dir, 'a', 'b'))).toEqual(['out.bin']);
  });

  it('writes a large buffer completely', async () => {
    const dir = await freshDir();
    const path = join(dir, 'big.bin');
    const data = new Uint8Array(3 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    await writeFileAtomic(path, data);
    expect(Buffer.compare(await fsp.readFile(path), data)).toBe(0);
  });

  it('keeps the old contents visible until the new file is complete', async () => {
    const dir = await freshDir();
    const path = join(dir, 'target.txt');
    await fsp.writeFile(path, 'old');
    const realRename = fsp.rename.bind(fsp);
    let seenBeforeRename = '';
    let tempContents = '';
    vi.spyOn(fsp, 'rename').mockImplementation(async (from, to) => {
      seenBeforeRename = await fsp.readFile(path, 'utf8');
      tempContents = await fsp.readFile(from, 'utf8');
      return realRename(from, to);
    });
    await writeFileAtomic(path, 'new contents');
    expect(seenBeforeRename).toBe('old');
    expect(tempContents).toBe('new contents');
    expect(await fsp.readFile(path, 'utf8')).toBe('new contents');
    expect(await fsp.readdir(dir)).toEqual(['target.txt']);
  });

  it('a write that fails halfway leaves the old file intact and removes the temp file', async () => {
    const dir = await freshDir();
    const path = join(dir, 'target.txt');
    await fsp.writeFile(path, 'old');
    const realOpen = fsp.open.bind(fsp);
    vi.spyOn(fsp, 'open').mockImplementationOnce(async (...args: Parameters<typeof fsp.open>) => {
      const handle: FileHandle = await realOpen(...args);
      const realWrite = handle.write.bind(handle) as (b: Uint8Array, o: number, l: number) => Promise<unknown>;
      let calls = 0;
      handle.write = (async (buffer: Uint8Array, offset: number, length: number) => {
        if (calls++ > 0) throw new Error('ENOSPC: no space left on device (simulated)');
        return realWrite(buffer, offset, length);
      }) as FileHandle['write'];
      return handle;
    });
    const err = await writeFileAtomic(path, [new Uint8Array([1, 2]), new Uint8Array([3])]).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(`writeFileAtomic(${path}): write failed, target left unchanged`);
    expect((err as Error).message).toContain('ENOSPC');
    expect(await fsp.readFile(path, 'utf8')).toBe('old');
    expect(await fsp.readdir(dir)).toEqual(['target.txt']);
  });

  it('a failing rename leaves the old file intact and removes the temp file', async () => {
    const dir = await freshDir();
    const path = join(dir, 'target.txt');
    await fsp.writeFile(path, 'old');
    vi.spyOn(fsp, 'rename').mockRejectedValueOnce(new Error('EXDEV (simulated)'));
    await expect(writeFileAtomic(path, 'new')).rejects.toThrow(/target left unchanged: EXDEV/);
    expect(await fsp.readFile(path, 'utf8')).toBe('old');
    expect(await fsp.readdir(dir)).toEqual(['target.txt']);
  });

  it('rejects a bad chunk before creating anything', async () => {
    const dir = await freshDir();
    const path = join(dir, 'sub', 'x.bin');
    const bad = [new Uint8Array(1), 5] as unknown as Uint8Array[];
    await expect(writeFileAtomic(path, bad)).rejects.toThrow(`writeFileAtomic(${path}): chunk 1 is not a Uint8Array`);
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  it('writes the chunks of a generator as they are made; a bad one fails the write and leaves the old file', async () => {
    const dir = await freshDir();
    const path = join(dir, 'gen.bin');
    const made: number[] = [];
    function* chunks(bad: boolean) {
      for (let i = 0; i < 3; i++) {
        made.push(i);
        yield (bad && i === 2 ? 'x' : Uint8Array.of(i, i)) as Uint8Array;
      }
    }
    const it = chunks(false);
    expect(made).toEqual([]);  // nothing is made before the write asks
    await writeFileAtomic(path, it);
    expect(Array.from(await fsp.readFile(path))).toEqual([0, 0, 1, 1, 2, 2]);
    await expect(writeFileAtomic(path, chunks(true))).rejects.toThrow(`writeFileAtomic(${path}): chunk 2 is not a Uint8Array`);
    expect(Array.from(await fsp.readFile(path))).toEqual([0, 0, 1, 1, 2, 2]);
    expect(await fsp.readdir(dir)).toEqual(['gen.bin']);
  });

  it('fails with the path named when the target is a directory, before writing anything', async () => {
    const dir = await freshDir();
    const path = join(dir, 'occupied');
    await fsp.mkdir(join(path, 'inner'), { recursive: true });
    await expect(writeFileAtomic(path, 'x')).rejects.toThrow(`writeFileAtomic(${path}): write failed, target left unchanged: ${path} is a folder: give the path of a file`);
    expect(() => writeFileAtomicSync(path, 'x')).toThrow(`${path} is a folder`);
    expect((await fsp.readdir(dir)).sort()).toEqual(['occupied']);
  });

  it('refuses a target that is a pipe or a device (the rename would replace it), before writing anything', async () => {
    const dir = await freshDir();
    const path = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [path]).status).toBe(0);
    await expect(writeFileAtomic(path, 'x')).rejects.toThrow(`writeFileAtomic(${path}): write failed, target left unchanged: ${path} is not a regular file (a device, pipe or socket): give the path of a file`);
    expect(() => writeFileAtomicSync(path, 'x')).toThrow(`${path} is not a regular file`);
    await expect(AtomicFileWriter.open(path)).rejects.toThrow(`${path} is not a regular file`);
    expect(fs.statSync(path).isFIFO()).toBe(true);
    expect(await fsp.readdir(dir)).toEqual(['fifo']);
  });

  it('writes a file whose name is 250 bytes (its temporary file has a shorter name), and names a name over 255 bytes', async () => {
    const dir = await freshDir();
    const path = join(dir, `${'é'.repeat(123)}.bin`); // 250 bytes in UTF-8
    const temps: string[] = [];
    const realOpen = fsp.open.bind(fsp);
    vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      temps.push(String(args[0]));
      return realOpen(...args);
    });
    await writeFileAtomic(path, 'async');
    expect(fs.readFileSync(path, 'utf8')).toBe('async');
    writeFileAtomicSync(path, 'sync');
    expect(fs.readFileSync(path, 'utf8')).toBe('sync');
    expect(Buffer.byteLength(basename(temps[0]!))).toBeLessThanOrEqual(255);
    expect(fs.readdirSync(dir)).toEqual([basename(path)]);
    const long = join(dir, `${'x'.repeat(256)}.bin`);
    const refused = `${long}): write failed, target left unchanged: the file name of ${long} is 260 bytes, longer than the 255 a file system takes`;
    await expect(writeFileAtomic(long, 'x')).rejects.toThrow(`writeFileAtomic(${refused}`);
    expect(() => writeFileAtomicSync(long, 'x')).toThrow(`writeFileAtomic(${refused}`);
    await expect(AtomicFileWriter.open(join(dir, 'sub', 'x'.repeat(256)))).rejects.toThrow('is 256 bytes, longer than the 255 a file system takes');
    expect(fs.readdirSync(dir)).toEqual([basename(path)]);
  });

  it('a replaced file keeps its permission bits, and a symbolic link stays a link to the new contents', async () => {
    const dir = await freshDir();
    const path = join(dir, 'private.bin');
    fs.writeFileSync(path, 'old');
    fs.chmodSync(path, 0o600);
    await writeFileAtomic(path, 'new');
    writeFileAtomicSync(path, 'newer');
    expect([fs.readFileSync(path, 'utf8'), fs.statSync(path).mode & 0o777]).toEqual(['newer', 0o600]);
    const link = join(dir, 'latest.bin');
    fs.symlinkSync(path, link);
    await writeFileAtomic(link, 'through the link');
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readFileSync(path, 'utf8')).toBe('through the link');
    expect(fs.readdirSync(dir).sort()).toEqual(['latest.bin', 'private.bin']);
  });
});

describe('writeFileAtomicSync', () => {
  it('writes and replaces, creating parent directories, leaving no temp file', async () => {
    const dir = await freshDir();
    const path = join(dir, 'p', 'out.txt');
    writeFileAtomicSync(path, 'one');
    writeFileAtomicSync(path, [new TextEncoder().encode('tw'), new TextEncoder().encode('o')]);
    expect(fs.readFileSync(path, 'utf8')).toBe('two');
    expect(fs.readdirSync(join(dir, 'p'))).toEqual(['out.txt']);
  });

  it('a failing rename leaves the old file intact and removes the temp file', async () => {
    const dir = await freshDir();
    const path = join(dir, 'target.txt');
    fs.writeFileSync(path, 'old');
    vi.spyOn(fs, 'renameSync').mockImplementationOnce(() => {
      throw new Error('EIO (simulated)');
    });
    expect(() => writeFileAtomicSync(path, 'new')).toThrow(/target left unchanged: EIO/);
    expect(fs.readFileSync(path, 'utf8')).toBe('old');
    expect(fs.readdirSync(dir)).toEqual(['target.txt']);
  });

  it('a failing write leaves the old file intact and removes the temp file', async () => {
    const dir = await freshDir();
    const path = join(dir, 'target.txt');
    fs.writeFileSync(path, 'old');
    vi.spyOn(fs, 'fsyncSync').mockImplementationOnce(() => {
      throw new Error('EIO on fsync (simulated)');
    });
    expect(() => writeFileAtomicSync(path, 'new')).toThrow(/EIO on fsync/);
    expect(fs.readFileSync(path, 'utf8')).toBe('old');
    expect(fs.readdirSync(dir)).toEqual(['target.txt']);
  });
});

describe('makeDirs', () => {
  it('creates a folder and its missing parents, and accepts one that exists', async () => {
    const dir = await freshDir();
    makeDirs(join(dir, 'a', 'b', 'c'));
    expect(fs.statSync(join(dir, 'a', 'b', 'c')).isDirectory()).toBe(true);
    makeDirs(join(dir, 'a', 'b'));
    makeDirs(join(dir, 'a', 'b', 'c'));
    expect(fs.readdirSync(join(dir, 'a', 'b'))).toEqual(['c']);
  });

  it('names a file that stands where a folder should be', async () => {
    const dir = await freshDir();
    fs.writeFileSync(join(dir, 'f'), 'x');
    expect(() => makeDirs(join(dir, 'f'))).toThrow(`cannot create the folder ${join(dir, 'f')}: a file of that name exists`);
    expect(() => makeDirs(join(dir, 'f', 'g'))).toThrow(/ENOTDIR/);
  });

  // Node's recursive mkdir loops forever on Linux there (procfs answers ENOENT for a new folder under /proc, which
  // exists); run in a child so that a hang fails the test
  it('fails at once for a folder a file system cannot hold (/proc)', () => {
    const module = new URL('../../dist/lib/io/atomic.js', import.meta.url).href;
    const code = `import(${JSON.stringify(module)}).then((m) => m.makeDirs('/proc/mae-no-such/run')).catch((e) => { console.log(e.code); });`;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 20_000 });
    expect(r.signal).toBe(null);
    expect(r.stdout.trim()).toMatch(/^E[A-Z]+$/); // ENOENT on Linux
  });
});

describe('checkWritableFolder', () => {
  it('takes a folder there or to be made, and refuses by name one that a file or a link to nothing stands in the way of', async () => {
    const dir = await freshDir();
    checkWritableFolder('job', dir);
    checkWritableFolder('job', join(dir, 'new', 'run'));
    fs.writeFileSync(join(dir, 'f'), 'x');
    fs.symlinkSync(join(dir, 'nothing'), join(dir, 'dangling'));
    fs.symlinkSync(dir, join(dir, 'link'));
    checkWritableFolder('job', join(dir, 'link'));
    // these were taken: the error came later, from making the folder or a file in it (linprobe after its features)
    expect(() => checkWritableFolder('job', join(dir, 'f'))).toThrow(new Error(`job: the output folder ${join(dir, 'f')} is not a folder; choose another folder (--out)`));
    expect(() => checkWritableFolder('job', join(dir, 'f', 'run'))).toThrow(
      new Error(`job: the output folder ${join(dir, 'f', 'run')} cannot be made: ${join(dir, 'f')} is not a folder; choose another folder (--out)`),
    );
    expect(() => checkWritableFolder('job', join(dir, 'dangling'))).toThrow(new Error(`job: the output folder ${join(dir, 'dangling')} is not a folder; choose another folder (--out)`));
    expect(() => checkWritableFolder('job', join(dir, 'dangling', 'run'))).toThrow(`cannot be made: ${join(dir, 'dangling')} is not a folder`);
    expect(fs.readdirSync(dir).sort()).toEqual(['dangling', 'f', 'link']);
  });
});

describe('removeStaleTemps', () => {
  it("removes the temporary files of killed writers of that file only, keeping live writers' and other files", async () => {
    const dir = await freshDir();
    const path = join(dir, 'checkpoint.safetensors');
    const deadPid = endedPid();
    const names = [
      `.checkpoint.safetensors.${deadPid}.0123456789ab.tmp`, // a killed writer's
      `.checkpoint.safetensors.${process.pid}.0123456789ab.tmp`, // of this pid but not of a write of this process (a restarted container's first process)
      `.other.safetensors.${deadPid}.0123456789ab.tmp`, // another file's
      'checkpoint.safetensors',
    ];
    for (const name of names) fs.writeFileSync(join(dir, name), 'x');
    fs.utimesSync(join(dir, names[1]!), 1e6, 1e6); // written before this process started
    const writing = await AtomicFileWriter.open(path); // this process's own write, in progress: kept
    expect(removeStaleTemps(path).sort()).toEqual([join(dir, names[0]!), join(dir, names[1]!)].sort());
    expect(fs.readdirSync(dir).filter((n) => !names.includes(n))).toHaveLength(1);
    await writing.abort();
    expect(fs.readdirSync(dir).sort()).toEqual(names.slice(2).sort());
    expect(removeStaleTemps(join(dir, 'missing', 'x.bin'))).toEqual([]);
  });

  it('removes those of targets with long names: temporary names cut short (kept apart by a hash), and whole ones', async () => {
    const dir = await freshDir();
    const deadPid = endedPid();
    /** The temporary file of a write of `target` as a killed writer left it. */
    const stale = async (target: string) => {
      const writing = await AtomicFileWriter.open(target);
      const [temp] = fs.readdirSync(dir).filter((n) => n.includes(`.${process.pid}.`));
      await writing.abort();
      const name = temp!.replace(`.${process.pid}.`, `.${deadPid}.`);
      fs.writeFileSync(join(dir, name), 'x');
      return name;
    };
    const long = join(dir, 'l'.repeat(250));
    const cut = await stale(long);
    expect(cut).toMatch(new RegExp(`^\\.l{209}~[0-9a-f]{16}\\.${deadPid}\\.[0-9a-f]{12}\\.tmp$`));
    const other = await stale(join(dir, `${'l'.repeat(249)}m`)); // the same first 209 bytes
    expect(other).not.toBe(cut);
    const whole = await stale(join(dir, 'w'.repeat(228)));
    expect(whole.startsWith(`.${'w'.repeat(228)}.${deadPid}.`)).toBe(true);
    expect(removeStaleTemps(long)).toEqual([join(dir, cut)]);
    expect(removeStaleTemps(join(dir, 'w'.repeat(228)))).toEqual([join(dir, whole)]);
    expect(fs.readdirSync(dir)).toEqual([other]);
  });

  it('looks beside the file that a symbolic link points to, where the writes of the link go', async () => {
    const dir = await freshDir();
    const deadPid = endedPid();
    fs.mkdirSync(join(dir, 'kept'));
    const file = join(dir, 'kept', 'run1.safetensors');
    fs.writeFileSync(file, 'x');
    const link = join(dir, 'checkpoint.safetensors');
    fs.symlinkSync(file, link);
    const stale = join(dir, 'kept', `.run1.safetensors.${deadPid}.0123456789ab.tmp`);
    fs.writeFileSync(stale, 'x');
    expect(removeStaleTemps(link)).toEqual([stale]);
    expect(fs.readdirSync(join(dir, 'kept'))).toEqual(['run1.safetensors']);
  });
});

describe('isRunning', () => {
  it('counts this process and a live one as running, an ended one and a zombie (ended, not yet reaped) as not', async () => {
    expect(isRunning(process.pid)).toBe(true);
    const ended = endedPid();
    expect(isRunning(ended)).toBe(false);
    // sh starts a short child, then becomes `sleep 5`, which never reaps it: the child stays a zombie
    const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const zombie = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (d: Buffer) => resolve(d.toString()))));
      await vi.waitFor(() => expect(fs.readFileSync(`/proc/${zombie}/stat`, 'utf8')).toMatch(/\) Z /), { timeout: 5000 });
      expect(isRunning(zombie)).toBe(false);
      expect(isRunning(parent.pid!)).toBe(true);
    } finally {
      parent.kill();
    }
  });
});
