// mae linprobe as an MPI job of 2 ranks (test/distributed/linprobe-rank.mjs, linprobe() of the compiled package, under
// Open MPI's mpirun as in mpi.test.ts): ranks started with other options, another checkpoint or other data refuse to
// probe, naming the difference; a rank that fails after the start leaves rank 0 writing no results; a stop on one rank
// stops both after the same epoch, with no results.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { pretrain } from '../../lib/train/pretrain.js';
import type { LinprobeOptions } from '../../lib/train/linprobe.js';

const rankScript = new URL('./linprobe-rank.mjs', import.meta.url).pathname;
const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMP_NUM_THREADS: '1' };
const tmp = () => mkdtempSync(join(tmpdir(), 'mae-mpi-lp-'));

const mpirunFound = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
if (mpirunFound.error) throw new Error(`mpirun was not found (${mpirunFound.error.message}): install Open MPI (sudo apt-get install openmpi-bin libopenmpi-dev) to run the data-parallel tests`);

/** mpirun with one app context per entry of `apps` ([ranks, options, fault?]). */
/** With `waitForAll`, mpirun lets every rank end by itself when one fails (for errors that every rank raises). */
function mpirun(apps: [number, LinprobeOptions, object?][], waitForAll = false) {
  const args = ['--oversubscribe', '--bind-to', 'none', ...(waitForAll ? ['--mca', 'orte_abort_on_non_zero_status', '0'] : [])];
  apps.forEach(([np, opts, fault], i) => {
    if (i > 0) args.push(':');
    args.push('-np', String(np), process.execPath, rankScript, JSON.stringify(opts), ...(fault ? [JSON.stringify(fault)] : []));
  });
  const errorsDir = tmp();
  const r = spawnSync('mpirun', args, { encoding: 'utf8', env: { ...env, TEST_RANK_ERRORS: errorsDir }, timeout: 120_000 });
  const results = r.stdout.split('\n').filter((l) => l.startsWith('result ')).map((l) => JSON.parse(l.slice(7)) as { rank: number; stopped: boolean; top1: number | null });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}`, results, errors: rankErrors(errorsDir) };
}

/** The error message of each rank that failed, by rank (the rank scripts write them: mpirun may drop a rank's output). */
function rankErrors(dir: string): string[] {
  return readdirSync(dir).sort().map((f) => readFileSync(join(dir, f), 'utf8'));
}

describe('linear probe on MPI', () => {
  const tiny = { embedDim: 32, depth: 1, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 };
  const data = { kind: 'synthetic' as const, count: 64 };
  let pt = '';
  let other = '';
  let probe: LinprobeOptions;
  beforeAll(async () => {
    pt = (await pretrain({ config: tiny, data, outDir: tmp(), epochs: 1, batchSize: 32, visualizeEvery: 0, threads: 1 })).outDir;
    other = (await pretrain({ config: tiny, data, outDir: tmp(), epochs: 1, batchSize: 32, visualizeEvery: 0, threads: 1, seed: 7 })).outDir;
    probe = { checkpoint: pt, data, epochs: 4, batchSize: 16, threads: 1, workers: 0 };
  });

  it('2 ranks probe as 1 process does; rank 0 alone writes', () => {
    const one = tmp();
    const single = spawnSync(process.execPath, [rankScript, JSON.stringify({ ...probe, outDir: one })], { encoding: 'utf8', env, timeout: 120_000 });
    expect(single.status, single.stderr).toBe(0);
    const out = tmp();
    const two = mpirun([[2, { ...probe, outDir: out }]]);
    expect(two.status, two.out).toBe(0);
    expect(two.results.map((x) => x.rank).sort()).toEqual([0, 1]);
    const a = JSON.parse(readFileSync(join(one, 'results.json'), 'utf8'));
    const b = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect([b.trainSamples, b.testSamples]).toEqual([64, 64]);
    expect(Math.abs(a.top1 - b.top1)).toBeLessThanOrEqual(1 / 64 + 1e-9);
  });

  it('ranks started with another limit, checkpoint or pool refuse to probe, naming it, and write nothing', () => {
    const cases: [LinprobeOptions, RegExp][] = [
      [{ limit: 32, data: undefined }, /different run options: data is \{"kind":"synthetic","count":64\} on rank 0 but \{"kind":"synthetic","count":64,"limit":32\} on rank 1/],
      [{ checkpoint: other }, /different run options: checkpointWeights is "[0-9a-f]{16}" on rank 0 but "[0-9a-f]{16}" on rank 1/],
      [{ pool: 'cls+avg' }, /different run options: pool is "cls" on rank 0 but "cls\+avg" on rank 1/],
      [{ testData: { kind: 'synthetic', count: 80, limit: 64 } }, /different run options: testData is \{"kind":"synthetic","count":64\} on rank 0 but \{"kind":"synthetic","count":80,"limit":64\} on rank 1/],
    ];
    for (const [differ, message] of cases) {
      const out = join(tmp(), 'probe');
      const job = mpirun([[1, { ...probe, outDir: out }], [1, { ...probe, ...differ, outDir: out }]], true);
      // (mpirun that waits for every rank exits 0: each rank's failure shows in its error and in no result line)
      expect(job.out, job.out).toMatch(message);
      expect(job.errors, job.out).toEqual([expect.stringMatching(message), expect.stringMatching(message)]); // both ranks say it
      expect(job.results).toEqual([]);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('ranks whose data differ under the same options refuse to probe', () => {
    // the same options (the relative path mn), other images: each rank runs in its own folder, with its own mn/
    const idx = (magic: number, dims: number[], bytes: Uint8Array) => {
      const head = Buffer.alloc(4 + 4 * dims.length);
      head.writeUInt32BE(magic, 0);
      dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
      return Buffer.concat([head, bytes]);
    };
    const folders = [1, 2].map((fill) => {
      const d = tmp();
      mkdirSync(join(d, 'mn'));
      for (const prefix of ['train', 't10k']) {
        writeFileSync(join(d, 'mn', `${prefix}-images-idx3-ubyte`), idx(0x803, [20, 28, 28], new Uint8Array(20 * 784).map((_, i) => (i * fill) % 251)));
        writeFileSync(join(d, 'mn', `${prefix}-labels-idx1-ubyte`), idx(0x801, [20], new Uint8Array(20).map((_, i) => i % 10)));
      }
      return d;
    });
    const opts = { rawPixels: true, data: { kind: 'mnist' as const, path: 'mn' }, epochs: 1, batchSize: 10, threads: 1, workers: 0 };
    const args = ['--oversubscribe', '--bind-to', 'none', '--mca', 'orte_abort_on_non_zero_status', '0'];
    folders.forEach((d, i) => args.push(...(i > 0 ? [':'] : []), '-np', '1', '-wdir', d, process.execPath, rankScript, JSON.stringify({ ...opts, outDir: join(d, 'probe') })));
    const errorsDir = tmp();
    const r = spawnSync('mpirun', args, { encoding: 'utf8', env: { ...env, TEST_RANK_ERRORS: errorsDir }, timeout: 120_000 });
    expect(r.stdout).not.toMatch(/^result /m);
    const message = /the ranks were started with different data: test is "[0-9a-f]{16}" on rank 0 but "[0-9a-f]{16}" on rank 1/;
    expect(`${r.stdout}${r.stderr}`).toMatch(message);
    expect(rankErrors(errorsDir)).toEqual([expect.stringMatching(message), expect.stringMatching(message)]); // both ranks say it
    for (const d of folders) expect(existsSync(join(d, 'probe'))).toBe(false);
  });

  it('a rank that fails after the start ends the job, and rank 0 writes no results', () => {
    const out = tmp();
    const job = mpirun([[2, { ...probe, outDir: out }, { rank: 1, epoch: 2, kind: 'throw' }]]);
    expect(job.status).not.toBe(0);
    expect(job.out).toMatch(/\[mae rank 0\] rank 1 failed: a fault injected after epoch 2; this rank stops too/);
    expect(job.results).toEqual([]);
    expect(readdirSync(out)).toEqual(['log.jsonl']);
    expect(readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).epoch)).toEqual([1, 2]);
  });

  it('a stop asked of one rank stops both after the same epoch, with no results', () => {
    const out = tmp();
    const job = mpirun([[2, { ...probe, outDir: out }, { rank: 1, epoch: 2, kind: 'stop' }]]);
    expect(job.status, job.out).toBe(0);
    expect(job.results.map((x) => [x.rank, x.stopped]).sort()).toEqual([[0, true], [1, true]]);
    expect(readdirSync(out)).toEqual(['log.jsonl']);
    expect(readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).epoch)).toEqual([1, 2]);
  });
});
