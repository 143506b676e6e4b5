// lib/distributed without starting MPI: launcher detection, a process on its own, the gradient buckets' layout, the data
// fingerprint, the masking noise keyed to the sample, and what `mae info` says about MPI and NCCL (also for a
// library that is missing or not Open MPI, in child processes, since a process opens MPI once).
import { spawnSync } from 'node:child_process';
import { describe, expect, it, vi } from 'vitest';
import { Communicator, launcher } from '../../lib/distributed/comm.js';
import { datasetFingerprint } from '../../lib/distributed/check.js';
import { GradReducer } from '../../lib/distributed/reducer.js';
import { InMemoryDataset } from '../../lib/data/index.js';
import { maskNoise } from '../../lib/train/pretrain.js';
import { Tensor } from '../../lib/tensor.js';

const cli = new URL('../../dist/lib/cli.js', import.meta.url).pathname;
const info = (env: Record<string, string>) => spawnSync(process.execPath, [cli, 'info'], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
const row = (out: string, name: string) => out.split('\n').find((l) => l.startsWith(name.padEnd(20)))?.slice(21) ?? '';

describe('launcher', () => {
  it('reads the rank and size that mpirun, srun (PMIx) and PMI launchers set, and none without them', () => {
    expect(launcher({})).toBeNull();
    expect(launcher({ OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_SIZE: '8' })).toEqual({ name: 'Open MPI mpirun', rank: 3, size: 8 });
    expect(launcher({ PMIX_RANK: '1', SLURM_NTASKS: '64' })).toEqual({ name: 'PMIx (srun --mpi=pmix, prterun)', rank: 1, size: 64 });
    expect(launcher({ PMIX_RANK: '0' })!.size).toBeNull();
    expect(launcher({ PMI_RANK: '2', PMI_SIZE: '4' })).toMatchObject({ rank: 2, size: 4 });
    expect(launcher({ OMPI_COMM_WORLD_RANK: 'x' })).toBeNull();
  });

  it("runs as one process when no launcher started it, and refuses a bad mode or timeout", () => {
    const c = Communicator.open();
    expect([c.kind, c.rank, c.size, c.localRank]).toEqual(['none', 0, 1, 0]);
    expect(Array.from(c.allreduce([1.5, 2], 'sum'))).toEqual([1.5, 2]);
    expect(c.broadcastJson({ a: 1 })).toEqual({ a: 1 });
    expect(Array.from(c.broadcast(Uint8Array.of(7)))).toEqual([7]);
    expect(() => c.broadcast(null)).toThrow(/^Communicator.broadcast: bytes must be a Uint8Array on the root \(rank 0\), got null$/);
    expect(() => c.broadcast(Uint8Array.of(7), 1)).toThrow(/^Communicator.broadcast: root must be a rank in \[0, 1\), got the number 1$/);
    expect(() => c.broadcastJson(7, 1)).toThrow(/^Communicator.broadcastJson: root must be a rank in \[0, 1\), got the number 1$/);
    expect(c.allgatherJson('x')).toEqual(['x']);
    const f = Float32Array.of(1, 2);
    expect(c.allgatherConcat(f)).toBe(f);
    expect(() => Communicator.open({ distributed: 'nccl' as never })).toThrow(/^Communicator.open: distributed must be 'auto', 'mpi' or 'none', got the string 'nccl'$/);
    expect(() => Communicator.open({ distributed: 'mpi', timeoutSeconds: 0 })).toThrow(/^Communicator.open: timeoutSeconds must be a positive number of seconds/);
    // (one that overflows the clock would end the wait for MPI at once)
    expect(() => Communicator.open({ distributed: 'mpi', timeoutSeconds: Infinity })).toThrow(/^Communicator.open: timeoutSeconds must be a positive number of seconds, at most 1e9 \(about 31 years\), got the number Infinity$/);
    // null is not the default
    expect(() => Communicator.open({ distributed: null as never })).toThrow(/^Communicator.open: distributed must be 'auto', 'mpi' or 'none', got null$/);
  });

  it('says when an MPI library it was given goes unused (no launcher, or distributed none), and is silent otherwise', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      Communicator.open();
      Communicator.open({ distributed: 'none' });
      expect(warn).not.toHaveBeenCalled();
      expect(Communicator.open({ mpiLibrary: '/opt/mpi/lib/libmpi.so.40' }).kind).toBe('none');
      expect(Communicator.open({ distributed: 'none', mpiLibrary: '/opt/mpi/lib' }).kind).toBe('none');
      expect(warn.mock.calls).toEqual([
        ['the MPI library /opt/mpi/lib/libmpi.so.40 is not used: no MPI launcher (mpirun, srun) started this process, so it runs on its own', { code: 'MAE_MPI_UNUSED' }],
        ["the MPI library /opt/mpi/lib is not used: distributed is 'none', so it runs on its own", { code: 'MAE_MPI_UNUSED' }],
      ]);
    } finally {
      warn.mockRestore();
    }
  });
});

describe('GradReducer buckets', () => {
  it('cuts the parameters in reverse order into a small first bucket and capped ones, a large tensor alone', () => {
    const p = (n: number, grad = true) => {
      const t = Tensor.zeros([n]);
      t.requiresGrad = grad;
      return t;
    };
    // registration order a..f; backward finishes them about in reverse
    const [a, b, c, d, e, f] = [p(100), p(300), p(50), p(2000), p(10, false), p(200)];
    const r = new GradReducer(Communicator.single(), [a!, b!, c!, d!, e!, f!], { firstBucketBytes: 1000, bucketBytes: 1500 });
    // f (800 B) fits the first 1000 B, d (8000 B) is alone, c + b make 1400 B and a (400 B) would pass 1500 B; e is not trained
    expect(r.buckets).toEqual([[f], [d], [c, b], [a]]);
    for (const t of [a, b, c, d, e, f]) t!.dispose();
  });
});

describe('per-sample randomness', () => {
  it("keys each sample's masking noise to its place in the epoch, not to the batch it is in", () => {
    const L = 7;
    const batch = maskNoise(3, 2, 10, 4, L);
    for (let b = 0; b < 4; b++) expect(maskNoise(3, 2, 10 + b, 1, L)).toEqual(batch.subarray(b * L, (b + 1) * L));
    expect(maskNoise(3, 1, 10, 4, L)).not.toEqual(batch);
    expect(maskNoise(4, 2, 10, 4, L)).not.toEqual(batch);
    expect(batch.every((v) => v >= 0 && v < 1)).toBe(true);
  });

  it('fingerprints a dataset by its contents: one pixel or one label changes it', async () => {
    const make = (pixel: number, label: number) => {
      const images = new Uint8Array(40 * 4).fill(7);
      images[0] = pixel;
      return new InMemoryDataset({ images, labels: Array.from({ length: 40 }, (_, i) => (i === 0 ? label : 1)), channels: 1, height: 2, width: 2, numClasses: 3 });
    };
    const base = await datasetFingerprint(make(7, 1));
    expect(await datasetFingerprint(make(7, 1))).toBe(base);
    expect(await datasetFingerprint(make(8, 1))).not.toBe(base);
    expect(await datasetFingerprint(make(7, 2))).not.toBe(base);
  });
});

describe('mae info', () => {
  it('names the MPI library and version, the launcher, and why NCCL is not there', () => {
    const r = info({});
    expect(r.status, r.stderr).toBe(0);
    expect(row(r.stdout, 'mpi')).toMatch(/^Open MPI v\d+\.\d+\.\d+ \(.*libmpi\.so\.40\)$/);
    expect(row(r.stdout, 'mpi launcher')).toMatch(/^none: runs as one process/);
    expect(row(r.stdout, 'nccl')).toMatch(/^not found: NCCL was not found \(tried:/);
  });

  it('says why MPI cannot be used when the library is missing or is not Open MPI, and a NCCL without its symbols', () => {
    const missing = info({ MAE_MPI_LIB: '/nonexistent/libmpi.so.40', MAE_NCCL_LIB: '/nonexistent/libnccl.so.2' });
    expect(row(missing.stdout, 'mpi')).toMatch(/^not found: the MPI library could not be opened \(tried:/);
    expect(missing.stdout).toMatch(/\/nonexistent\/libmpi\.so\.40: .*No such file/);
    expect(missing.stdout).toMatch(/\/nonexistent\/libnccl\.so\.2/);
    const libm = '/lib/x86_64-linux-gnu/libm.so.6';
    const foreign = info({ MAE_MPI_LIB: libm, MAE_NCCL_LIB: libm });
    expect(row(foreign.stdout, 'mpi')).toMatch(/is not Open MPI \(it has no ompi_mpi_comm_world\)/);
    expect(row(foreign.stdout, 'nccl')).toMatch(/lacks ncclGetVersion/);
  });
});
