// Data-parallel pre-training under Open MPI's mpirun (CI installs openmpi-bin; as root Open MPI needs
// OMPI_ALLOW_RUN_AS_ROOT*, --oversubscribe lets 2-3 ranks share 2 cores, --bind-to none keeps a rank off a single
// busy core). Ranks run test/distributed/rank.mjs
// (pretrain() of the compiled package). Checked: 2 ranks at batch 8 (and at batch 4 with accumulation 2) train the
// same model as 1 process at batch 16, with the kNN monitor split over the ranks; a run resumes on another number of
// processes; a stop asked of one rank stops all at one step; a rank that throws, is killed or stops answering ends
// the job with an error naming the rank and the cause; ranks started with different settings refuse to train; the
// CLI under mpirun, stopped by Ctrl-C on one rank or on mpirun.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../lib/train/checkpoint.js';
import type { PretrainOptions } from '../../lib/train/pretrain.js';

const rankScript = new URL('./rank.mjs', import.meta.url).pathname;
const cli = new URL('../../dist/lib/cli.js', import.meta.url).pathname;
const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMP_NUM_THREADS: '1' };
const tmp = () => mkdtempSync(join(tmpdir(), 'mae-mpi-'));

const mpirunFound = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
if (mpirunFound.error) throw new Error(`mpirun was not found (${mpirunFound.error.message}): install Open MPI (sudo apt-get install openmpi-bin libopenmpi-dev) to run the data-parallel tests`);

const small: PretrainOptions = {
  preset: 'mae_vit_tiny_patch4_28',
  config: { embedDim: 32, depth: 2, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 },
  data: { kind: 'synthetic', count: 64 },
  epochs: 2,
  blr: 1e-2,
  warmupEpochs: 1,
  workers: 0,
  visualizeEvery: 0,
  threads: 1,
  logEvery: 1,
  // buckets of 16 KiB: the tiny model's gradients go in several all-reduces, started during backward
  bucketMb: 1 / 64,
};

interface Job {
  r: SpawnSyncReturns<string>;
  out: string;
  seconds: number;
  results: { rank: number; worldSize: number; steps: number; stopped: boolean; losses: number[] }[];
  /** mpirun only: the error message of each rank that failed */
  errors?: string[];
}

/** mpirun with one app context per entry of `apps` ([ranks, options, fault?]); one entry: all ranks alike. */
/** With `waitForAll`, mpirun lets every rank end by itself when one fails (for errors that every rank raises). */
function mpirun(apps: [number, PretrainOptions, object?][], timeoutMs = 120_000, waitForAll = false): Job {
  const args = ['--oversubscribe', '--bind-to', 'none', ...(waitForAll ? ['--mca', 'orte_abort_on_non_zero_status', '0'] : [])];
  apps.forEach(([np, opts, fault], i) => {
    if (i > 0) args.push(':');
    args.push('-np', String(np), process.execPath, rankScript, JSON.stringify(opts), ...(fault ? [JSON.stringify(fault)] : []));
  });
  const t0 = performance.now();
  const errorsDir = tmp();
  const r = spawnSync('mpirun', args, { encoding: 'utf8', env: { ...env, TEST_RANK_ERRORS: errorsDir }, timeout: timeoutMs });
  // the error message of each rank that failed, by rank (the rank script writes them: mpirun may drop a rank's output)
  return { ...finish(r, t0), errors: readdirSync(errorsDir).sort().map((f) => readFileSync(join(errorsDir, f), 'utf8')) };
}

/** The same script as one process, without a launcher. */
function single(opts: PretrainOptions): Job {
  const t0 = performance.now();
  return finish(spawnSync(process.execPath, [rankScript, JSON.stringify(opts)], { encoding: 'utf8', env, timeout: 120_000 }), t0);
}

function finish(r: SpawnSyncReturns<string>, t0: number): Job {
  const out = `${r.stdout}\n${r.stderr}`;
  const results = r.stdout.split('\n').filter((l) => l.startsWith('result ')).map((l) => JSON.parse(l.slice(7)));
  return { r, out, seconds: (performance.now() - t0) / 1000, results };
}

/** The relative L2 difference of two checkpoints' weights, over all parameters. */
async function weightDifference(a: string, b: string): Promise<number> {
  const wa = (await loadCheckpoint(a)).weights;
  const wb = (await loadCheckpoint(b)).weights;
  let num = 0;
  let den = 0;
  for (const [k, t] of wa) {
    const u = wb.get(k)!.data;
    for (let i = 0; i < t.data.length; i++) {
      num += (t.data[i]! - u[i]!) ** 2;
      den += t.data[i]! ** 2;
    }
  }
  return Math.sqrt(num / den);
}

const knnLines = (dir: string) =>
  readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.knnEpoch !== undefined);

describe('data parallel on MPI', () => {
  const knn = { every: 1, trainLimit: 40, testLimit: 21 };
  let reference: { dir: string; losses: number[] };

  it('2 ranks at batch 8 train the same model as 1 process at batch 16, kNN monitor included', async () => {
    const dir1 = tmp();
    const one = single({ ...small, batchSize: 16, knn, outDir: dir1 });
    expect(one.r.status, one.out).toBe(0);
    reference = { dir: dir1, losses: one.results[0]!.losses };
    const dir2 = tmp();
    const two = mpirun([[2, { ...small, batchSize: 8, knn, outDir: dir2 }]]);
    expect(two.r.status, two.out).toBe(0);
    expect(two.results.map((x) => [x.rank, x.worldSize, x.steps]).sort()).toEqual([[0, 2, 8], [1, 2, 8]]);
    expect(one.results[0]!.steps).toBe(8);
    // every rank reports the same (averaged) losses, those of the single process up to summation order
    expect(two.results[0]!.losses).toEqual(two.results[1]!.losses);
    two.results[0]!.losses.forEach((l, i) => expect(Math.abs(l - reference.losses[i]!) / reference.losses[i]!).toBeLessThan(1e-5));
    expect(await weightDifference(dir1, dir2)).toBeLessThan(1e-4);
    // rank 0 alone wrote the log (one line per step, not two)
    expect(readFileSync(join(dir2, 'log.jsonl'), 'utf8').trim().split('\n').filter((l) => l.includes('"step"'))).toHaveLength(8);
    // the kNN monitor, split over the ranks, scores what one process scores (features equal up to rounding)
    const k1 = knnLines(dir1);
    const k2 = knnLines(dir2);
    expect(k2.map((l) => l.knnEpoch)).toEqual([1, 2]);
    k2.forEach((l, i) => expect(Math.abs(l.top1 - k1[i]!.top1)).toBeLessThanOrEqual(1 / 21 + 1e-9));
  });

  it('2 ranks at batch 4 with accumulation 2 train that model too', async () => {
    const dir = tmp();
    const job = mpirun([[2, { ...small, batchSize: 4, accumIter: 2, knn, outDir: dir }]]);
    expect(job.r.status, job.out).toBe(0);
    job.results[0]!.losses.forEach((l, i) => expect(Math.abs(l - reference.losses[i]!) / reference.losses[i]!).toBeLessThan(1e-5));
    expect(await weightDifference(reference.dir, dir)).toBeLessThan(1e-4);
  });

  it('resumes a run of 2 ranks on 1 process (the per-rank batch follows from the effective batch), and refuses 3 ranks', async () => {
    const dir = tmp();
    const first = mpirun([[2, { ...small, batchSize: 8, knn, outDir: dir, maxSteps: 3 }]]);
    expect(first.r.status, first.out).toBe(0);
    expect((await loadCheckpoint(dir)).meta.options).toMatchObject({ batchSize: 8, worldSize: 2 });
    const three = mpirun([[3, { ...small, knn, outDir: dir, resume: true }]]);
    expect(three.r.status).not.toBe(0);
    expect(three.out).toMatch(/resume: the checkpoint's run has an effective batch of 16 \(batch 8 x accumIter 1 x 2 process\(es\)\); .*x 3 process\(es\) here cannot make it/);
    const rest = single({ ...small, knn, outDir: dir, resume: true });
    expect(rest.r.status, rest.out).toBe(0);
    expect([...first.results[0]!.losses, ...rest.results[0]!.losses]).toHaveLength(8);
    rest.results[0]!.losses.forEach((l, i) => expect(Math.abs(l - reference.losses[i + 3]!) / reference.losses[i + 3]!).toBeLessThan(1e-5));
    expect(await weightDifference(reference.dir, dir)).toBeLessThan(1e-4);
  });

  it('a stop asked of one rank (its AbortSignal, Ctrl-C) stops every rank at the same step, with a checkpoint', async () => {
    const dir = tmp();
    const job = mpirun([[2, { ...small, batchSize: 8, outDir: dir }, { rank: 1, step: 3, kind: 'stop' }]]);
    expect(job.r.status, job.out).toBe(0);
    // asked by step 3's event on rank 1; the ranks agree on it after that step's events, and all stop after step 3
    expect(job.results.map((x) => [x.steps, x.stopped])).toEqual([[3, true], [3, true]]);
    expect((await loadCheckpoint(dir)).meta.position.step).toBe(3);
  });

  it('rank 0 alone locks the output folder: a folder another run holds ends every rank, rank 0 naming the holder', () => {
    const dir = tmp();
    const done = mpirun([[2, { ...small, batchSize: 8, epochs: 1, outDir: dir }]]);
    expect(done.r.status, done.out).toBe(0);
    expect(existsSync(join(dir, '.lock'))).toBe(false);
    // a run that holds it: this process
    writeFileSync(join(dir, '.lock'), JSON.stringify({ pid: process.pid, host: hostname(), thread: 0 }));
    const job = mpirun([[2, { ...small, batchSize: 8, epochs: 1, outDir: dir, resume: true }]]);
    expect(job.r.status).not.toBe(0);
    const inUse = `pretrain: ${dir} is in use by another run (process ${process.pid} on ${hostname()})`;
    expect(job.errors).toEqual([expect.stringContaining(inUse), expect.stringContaining(`rank 0 failed: ${inUse}`)]);
  });

  it('a rank that throws ends every rank with an error naming it and the cause', () => {
    const job = mpirun([[2, { ...small, batchSize: 8, outDir: tmp() }, { rank: 1, step: 2, kind: 'throw' }]]);
    expect(job.r.status).not.toBe(0);
    // rank 0 prints it as soon as it hears (before its own error), and its pretrain() rejects with it
    expect(job.out).toMatch(/\[mae rank 0\] rank 1 failed: a fault injected at step 2; this rank stops too/);
    expect(job.out).toMatch(/Error: rank 1 failed: a fault injected at step 2/);
    expect(job.results).toEqual([]);
  });

  it('a rank that is killed ends the job, the launcher naming the rank and the signal', () => {
    const job = mpirun([[2, { ...small, batchSize: 8, outDir: tmp() }, { rank: 1, step: 2, kind: 'kill' }]]);
    expect(job.r.status).not.toBe(0);
    expect(job.out).toMatch(/process rank 1 .*exited on signal 9 \(Killed\)/);
    expect(job.seconds).toBeLessThan(60);
  });

  it('a collective that does not complete within --dist-timeout ends the job with a clear message', () => {
    // rank 0 stops answering for 60 s in step 2's event; rank 1 gives up after 2 s, in the collective that follows
    // the step's events
    const job = mpirun([[2, { ...small, batchSize: 8, outDir: tmp(), distTimeout: 2 }, { rank: 0, step: 2, kind: 'stall', seconds: 60 }]]);
    expect(job.r.status).not.toBe(0);
    expect(job.out).toMatch(/rank 1 failed: the agreement of the ranks to stop after step 2 did not complete within 2 s \(the distributed timeout, --dist-timeout\)/);
    expect(job.seconds).toBeLessThan(50);
  });

  it('ranks started with different settings refuse to train, naming the setting and both values', () => {
    const job = mpirun(
      [
        [1, { ...small, batchSize: 8, outDir: tmp() }],
        [1, { ...small, batchSize: 8, blr: 2e-2, outDir: tmp() }],
      ],
      120_000,
      true,
    );
    // (mpirun that waits for every rank exits 0: each rank's failure shows in its error and in no result line)
    expect(job.results).toEqual([]);
    const message = /the ranks were started with different run options: blr is 0\.01 on rank 0 but 0\.02 on rank 1/;
    expect(job.out).toMatch(message);
    expect(job.errors).toEqual([expect.stringMatching(message), expect.stringMatching(message)]); // both ranks say it
    const data = mpirun([
      [1, { ...small, batchSize: 8, outDir: tmp() }],
      [1, { ...small, batchSize: 8, data: { kind: 'synthetic', count: 80, limit: 64 }, outDir: tmp() }],
    ]);
    expect(data.out).toMatch(/different run options: data is \{"kind":"synthetic","count":64\} on rank 0 but \{"kind":"synthetic","count":80,"limit":64\} on rank 1/);
  });

  it('2 CPU ranks train in bf16 (their gradients averaged in float32 over MPI)', () => {
    const job = mpirun([[2, { ...small, batchSize: 8, epochs: 1, precision: 'bf16', outDir: tmp() }]]);
    expect(job.r.status, job.out).toBe(0);
    expect(job.results.map((x) => x.steps)).toEqual([4, 4]);
    expect(job.results[0]!.losses).toEqual(job.results[1]!.losses);
  });

  it('ranks whose gradient buckets would differ (bucketMb, or a precision a resumed run takes from its checkpoint) refuse to train', async () => {
    // buckets of 16 KiB on rank 0 and 25 MiB on rank 1 would pair all-reduces of different sizes
    const job = mpirun([[1, { ...small, batchSize: 8, outDir: tmp() }], [1, { ...small, batchSize: 8, bucketMb: 25, outDir: tmp() }]], 120_000, true);
    expect(job.results).toEqual([]);
    const message = /the ranks were started with different data: bucketMb is 0\.015625 on rank 0 but 25 on rank 1/;
    expect(job.errors).toEqual([expect.stringMatching(message), expect.stringMatching(message)]);
    // a bf16 run resumed with fp32 given on rank 0 alone: rank 1 takes bf16 from the checkpoint
    const dir = tmp();
    const first = mpirun([[2, { ...small, batchSize: 8, precision: 'bf16', maxSteps: 2, outDir: dir }]]);
    expect(first.r.status, first.out).toBe(0);
    const rest = mpirun([[1, { ...small, precision: 'fp32', outDir: dir, resume: true }], [1, { ...small, outDir: dir, resume: true }]], 120_000, true);
    expect(rest.results).toEqual([]);
    expect(rest.errors).toEqual(Array(2).fill(expect.stringMatching(/different data: precision is "fp32" on rank 0 but "bf16" on rank 1/)));
    expect((await loadCheckpoint(dir)).meta.position.step).toBe(2);
  });

  it('mae pretrain under mpirun: rank 0 prints and writes, and mae info shows each rank', () => {
    const dir = tmp();
    const args = ['--oversubscribe', '--bind-to', 'none', '-np', '2', process.execPath, cli, 'pretrain', '--data-kind', 'synthetic', '--limit', '64', '--embed-dim', '32', '--depth', '1', '--num-heads', '2', '--decoder-embed-dim', '16', '--decoder-depth', '1', '--decoder-num-heads', '2', '--batch-size', '8', '--epochs', '1', '--threads', '1', '--workers', '0', '--out', dir];
    const r = spawnSync('mpirun', args, { encoding: 'utf8', env, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.match(/^pre-training /gm)).toHaveLength(1);
    expect(r.stdout).toMatch(/4 steps of 16 images .*, 2 ranks of 8 images/);
    expect(existsSync(join(dir, 'checkpoint.safetensors'))).toBe(true);
    const i = spawnSync('mpirun', ['--oversubscribe', '-np', '2', process.execPath, cli, 'info'], { encoding: 'utf8', env, timeout: 60_000 });
    expect(i.status, i.stderr).toBe(0);
    expect(i.stdout).toMatch(/mpi launcher {9}Open MPI mpirun: this process is rank 0 of 2/);
    expect(i.stdout).toMatch(/mpi launcher {9}Open MPI mpirun: this process is rank 1 of 2/);
  });

  it('Ctrl-C on mpirun with --mca odls_base_sigkill_timeout T: SIGTERM reaches every rank after T s, and all stop after one step with a checkpoint', async () => {
    // Open MPI's mpirun answers Ctrl-C with SIGCONT to each rank at once, SIGTERM T s later and SIGKILL another T s later
    // (T = 1 by default): a rank has T s to finish its step and write the checkpoint, as README says
    const dir = tmp();
    const args = ['--oversubscribe', '--bind-to', 'none', '--mca', 'odls_base_sigkill_timeout', '8', '-np', '2', process.execPath, cli, 'pretrain', '--data-kind', 'synthetic', '--limit', '512', '--embed-dim', '32', '--depth', '1', '--num-heads', '2', '--decoder-embed-dim', '16', '--decoder-depth', '1', '--decoder-num-heads', '2', '--batch-size', '8', '--epochs', '200', '--threads', '1', '--workers', '0', '--log-every', '1', '--visualize-every', '0', '--out', dir];
    const child = spawn('mpirun', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    const closed = new Promise<number | null>((done) => child.on('close', (code) => done(code)));
    while (!existsSync(join(dir, 'log.jsonl'))) await new Promise((r) => setTimeout(r, 10));
    const t0 = performance.now();
    child.kill('SIGINT');
    // mpirun's own status after Ctrl-C is 1, whatever the ranks return
    expect(await closed, text).toBe(1);
    expect(text).toMatch(/SIGTERM: finishing the current step and writing a checkpoint/);
    expect(text).not.toMatch(/failed|signal 9|Killed/);
    const stoppedAt = Number(/stopped after (\d+) steps/.exec(text)?.[1]);
    const ck = await loadCheckpoint(dir);
    expect(ck.meta.position.step).toBe(stoppedAt);
    // the run's 6,400 steps were far from done: the checkpoint is the stop's
    expect(stoppedAt).toBeGreaterThan(0);
    expect(stoppedAt).toBeLessThan(6400);
    // rank 0's job returned and printed its summary: the stop was its own, not mpirun's SIGKILL
    expect(text).toContain(`checkpoint: ${join(dir, 'checkpoint.safetensors')}`);
    // the SIGTERM came after the 8 s (mpirun itself returns shortly before its SIGKILL would be due, at 16 s)
    expect((performance.now() - t0) / 1000).toBeGreaterThan(7.5);
  });

  it('mae pretrain under mpirun: a second Ctrl-C on one rank ends every rank at once, with 130 and a line saying why', async () => {
    // before, the rank exited alone: its MPI_Finalize met the other rank mid-step, and the job ended with status 1
    // and rank 0's "rank 1 failed: MPI_Test failed for the barrier at the end of the run"
    const dir = tmp();
    const args = ['--oversubscribe', '--bind-to', 'none', '-np', '2', process.execPath, cli, 'pretrain', '--data-kind', 'synthetic', '--limit', '512', '--embed-dim', '192', '--depth', '8', '--num-heads', '3', '--decoder-embed-dim', '64', '--decoder-depth', '1', '--decoder-num-heads', '2', '--batch-size', '32', '--epochs', '3', '--threads', '1', '--workers', '0', '--log-every', '1', '--out', dir];
    const child = spawn('mpirun', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    const closed = new Promise<number | null>((done) => child.on('close', (code) => done(code)));
    const t0 = performance.now();
    while (!existsSync(join(dir, 'log.jsonl'))) await new Promise((r) => setTimeout(r, 10));
    // the ranks: mpirun's children, by their command line
    const ranks = spawnSync('pgrep', ['-P', String(child.pid), '-f', dir], { encoding: 'utf8' }).stdout.trim().split('\n').map(Number);
    expect(ranks).toHaveLength(2);
    // two deliveries 20 ms apart, both well within the step under way (about 0.5 s)
    process.kill(ranks[1]!, 'SIGINT');
    await new Promise((r) => setTimeout(r, 20));
    process.kill(ranks[1]!, 'SIGINT');
    expect(await closed, text).toBe(130);
    expect(text).toMatch(/mae: \[rank \d\] Ctrl-C again: quitting at once, which ends every rank/);
    expect(text).not.toContain('failed');
    expect(performance.now() - t0).toBeLessThan(60_000);
  });
});
