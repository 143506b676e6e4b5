// lockRunFolder racing another run: the fs calls are wrapped so that the other run's takeover can be made to happen
// between this run's reading of a dead lock and its removal, and the other run's start while this run writes its lock.
import * as fs from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { endedPid } from '../helpers/processes.js';

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return { ...real, renameSync: vi.fn(real.renameSync), writeFileSync: vi.fn(real.writeFileSync), linkSync: vi.fn(real.linkSync) };
});
const { lockRunFolder } = await import('../../lib/classify/checkpoint.js');

const dir = fs.mkdtempSync(join(tmpdir(), 'mae-lock-race-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('lockRunFolder: two runs taking over one dead lock', () => {
  it("the run that comes second keeps the first one's new lock and is refused", () => {
    const out = join(dir, 'raced');
    fs.mkdirSync(out);
    const lock = join(out, '.lock');
    fs.writeFileSync(lock, JSON.stringify({ pid: endedPid(), host: hostname(), thread: 0 }));
    // the other run (a live process: this one's parent) takes the dead lock over just before this run moves it aside
    const other = JSON.stringify({ pid: process.ppid, host: hostname(), thread: 0 });
    const real = vi.mocked(fs.renameSync).getMockImplementation()!;
    vi.mocked(fs.renameSync).mockImplementationOnce((from, to) => {
      fs.rmSync(lock);
      fs.writeFileSync(lock, other);
      real(from, to);
    });
    const warnings: string[] = [];
    expect(() => lockRunFolder('pretrain', out, (m) => warnings.push(m))).toThrow(`pretrain: ${out} is in use by another run (process ${process.ppid} on ${hostname()})`);
    expect(fs.readFileSync(lock, 'utf8')).toBe(other);
    expect(fs.readdirSync(out)).toEqual(['.lock']);
    expect(warnings).toEqual([]);
  });

  it('a dead lock alone is taken over, with a warning, and removed at the end', () => {
    const out = join(dir, 'alone');
    fs.mkdirSync(out);
    const lock = join(out, '.lock');
    const dead = endedPid();
    fs.writeFileSync(lock, JSON.stringify({ pid: dead, host: hostname(), thread: 0 }));
    const warnings: string[] = [];
    const held = lockRunFolder('pretrain', out, (m) => warnings.push(m));
    expect(JSON.parse(fs.readFileSync(lock, 'utf8'))).toEqual({ pid: process.pid, host: hostname(), thread: threadId });
    expect(warnings).toEqual([`took over ${lock}, the lock of a run that ended without removing it (process ${dead}, no longer running)`]);
    held.dispose();
    expect(fs.readdirSync(out)).toEqual([]);
  });
});

describe('lockRunFolder: another run starting while this one writes its lock', () => {
  it('never finds the lock empty: it takes the folder, and this run is refused naming it', () => {
    const out = join(dir, 'writing');
    fs.mkdirSync(out);
    const real = vi.mocked(fs.writeFileSync).getMockImplementation()!;
    let other: { dispose(): void } | undefined;
    // this run's write is cut in two, an empty file first (as a create would leave it), the other run's start between
    vi.mocked(fs.writeFileSync).mockImplementationOnce((file, data, options) => {
      real(file, '', options);
      other = lockRunFolder('finetune', out, () => {});
      real(file, data);
    });
    expect(() => lockRunFolder('pretrain', out, () => {})).toThrow(`pretrain: ${out} is in use by another run (process ${process.pid} on ${hostname()})`);
    expect(other).toBeDefined();
    expect(JSON.parse(fs.readFileSync(join(out, '.lock'), 'utf8'))).toEqual({ pid: process.pid, host: hostname(), thread: threadId });
    other!.dispose();
    expect(fs.readdirSync(out)).toEqual([]);
  });

  it('on a file system without hard links, writes the lock in place', () => {
    const out = join(dir, 'nolinks');
    fs.mkdirSync(out);
    vi.mocked(fs.linkSync).mockImplementationOnce(() => {
      throw Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' });
    });
    const held = lockRunFolder('pretrain', out, () => {});
    expect(fs.readdirSync(out)).toEqual(['.lock']);
    expect(JSON.parse(fs.readFileSync(join(out, '.lock'), 'utf8'))).toEqual({ pid: process.pid, host: hostname(), thread: threadId });
    expect(() => lockRunFolder('linprobe', out, () => {})).toThrow(`linprobe: ${out} is in use by another run (process ${process.pid} on ${hostname()})`);
    held.dispose();
    expect(fs.readdirSync(out)).toEqual([]);
  });
});
