// lockRunFolder taking over a dead run's lock while another run does the same: the fs calls are wrapped so that the
// other run's takeover can be made to happen between this run's reading of the dead lock and its removal.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { afterAll, describe, expect, it, vi } from 'vitest';

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return { ...real, renameSync: vi.fn(real.renameSync) };
});
const { lockRunFolder } = await import('../../lib/classify/checkpoint.js');

const dir = fs.mkdtempSync(join(tmpdir(), 'mae-lock-race-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const deadPid = () => Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);

describe('lockRunFolder: two runs taking over one dead lock', () => {
  it("the run that comes second keeps the first one's new lock and is refused", () => {
    const out = join(dir, 'raced');
    fs.mkdirSync(out);
    const lock = join(out, '.lock');
    fs.writeFileSync(lock, JSON.stringify({ pid: deadPid(), host: hostname(), thread: 0 }));
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
    const dead = deadPid();
    fs.writeFileSync(lock, JSON.stringify({ pid: dead, host: hostname(), thread: 0 }));
    const warnings: string[] = [];
    const held = lockRunFolder('pretrain', out, (m) => warnings.push(m));
    expect(JSON.parse(fs.readFileSync(lock, 'utf8'))).toEqual({ pid: process.pid, host: hostname(), thread: threadId });
    expect(warnings).toEqual([`took over ${lock}, the lock of a run that ended without removing it (process ${dead}, no longer running)`]);
    held.dispose();
    expect(fs.readdirSync(out)).toEqual([]);
  });
});
