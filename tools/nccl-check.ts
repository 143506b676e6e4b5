/**
 * The check of the GPU data-parallel path, for a machine with NVIDIA GPUs and NCCL (no MPI needed for one rank):
 *
 *   node dist/tools/nccl-check.js [outDir]                       one rank: this process alone, on cuda:0
 *   mpirun -np N node dist/tools/nccl-check.js [outDir]          N ranks, one GPU each (the local rank picks it)
 *
 * NCCL is found as the addon finds it (MAE_NCCL_LIB, else libnccl.so.2 on the library path); when MAE_NCCL_LIB is not
 * set this program first looks in Python's nvidia/nccl/lib (pip install nvidia-nccl-cu12) and sets it. Then, on the
 * rank's GPU, for float32 and for bfloat16 all-reduce:
 *   1. buckets of gradients holding rank-dependent values (1 + rank + i / n) are averaged over NCCL, and the result
 *      read back is compared with the exact mean (bf16: within its rounding, 2^-8 relative);
 *   2. a tiny MAE's backward runs with the reducer's hooks (buckets of 64 KiB start during backward) and the averaged
 *      gradients are compared with those of a plain backward of the same batch (with one rank they must be equal:
 *      fp32 bit for bit, bf16 within its rounding; with N ranks every rank has the same batch, so the mean is too).
 * Writes nccl-check.json (passed, failures, versions) to the output folder; exit code 0 passed, 1 failed, 2 no
 * usable CUDA or NCCL (with the reason). MAE_CHECK_DEVICE=cpu: a dry run of the same program on the CPU over MPI
 * (float32 only; MPI is started even without a launcher), to check the program on a machine without a GPU.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

if (!process.env.MAE_NCCL_LIB) {
  try {
    const dir = execFileSync('python3', ['-c', "import nvidia.nccl as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))"], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (existsSync(join(dir, 'libnccl.so.2'))) process.env.MAE_NCCL_LIB = dir;
  } catch {
    /* no Python NCCL: the library path decides */
  }
}

const { native } = await import('../lib/native.js');
const { Communicator, GradReducer, launcher, ncclStatus } = await import('../lib/distributed/index.js');
const { MaskedAutoencoder } = await import('../lib/mae/model.js');
const { Tensor, tidy } = await import('../lib/tensor.js');

const outDir = process.argv[2] ?? process.env.OUT ?? 'nccl-check-out';
mkdirSync(outDir, { recursive: true });
const cuda = native.info().cuda;
const nccl = ncclStatus();
const report: Record<string, unknown> = { cuda: cuda.available ? cuda.devices : cuda.reason, nccl, launcher: launcher() };
const done = (code: number) => {
  writeFileSync(join(outDir, `nccl-check${launcher() ? `-rank${launcher()!.rank}` : ''}.json`), JSON.stringify(report, null, 2) + '\n');
  console.log(JSON.stringify(report));
  process.exit(code);
};
const dry = process.env.MAE_CHECK_DEVICE === 'cpu';
if (!dry && (!cuda.available || !nccl.found)) {
  report.passed = false;
  report.reason = !cuda.available ? `CUDA is unavailable: ${cuda.reason}` : `NCCL is unavailable: ${nccl.reason}`;
  done(2);
}

const comm = launcher() || dry ? Communicator.open({ distributed: 'mpi' }) : Communicator.single();
const index = comm.localRank;
const device = dry ? 'cpu' : `cuda:${index}`;
report.rank = comm.rank;
report.worldSize = comm.size;
if (!dry) report.ncclVersion = comm.startNccl(index).version;
const failures: string[] = [];
const precisions = dry ? [false] : [false, true];

// 1. buckets of known values
for (const bf16 of precisions) {
  const sizes = [1, 1000, 65537];
  const grads = sizes.map((n) => Tensor.fromArray(Float32Array.from({ length: n }, (_, i) => 1 + comm.rank + i / n), [n], { device }));
  comm.wait(comm.allreduceGrads(grads, { bf16, what: `the check bucket (${bf16 ? 'bf16' : 'fp32'})` }));
  sizes.forEach((n, k) => {
    const got = grads[k]!.dataSync();
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const want = 1 + (comm.size - 1) / 2 + i / n;
      worst = Math.max(worst, Math.abs(got[i]! - want) / want);
    }
    if (worst > (bf16 ? 2 ** -8 : 1e-6)) failures.push(`bucket of ${n} (${bf16 ? 'bf16' : 'fp32'}): relative error ${worst}`);
  });
  for (const g of grads) g.dispose();
}

// 2. a tiny MAE: gradients averaged during backward against a plain backward
for (const bf16 of precisions) {
  const mae = new MaskedAutoencoder({ imgSize: 32, patchSize: 4, inChans: 3, embedDim: 64, depth: 2, numHeads: 4, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 4 }, { seed: 1 }).to(device);
  const images = Float32Array.from({ length: 4 * 3 * 32 * 32 }, (_, i) => Math.sin(i * 0.37));
  const noise = Float32Array.from({ length: 4 * 64 }, (_, i) => ((i * 7919) % 997) / 997);
  const run = (hooks?: InstanceType<typeof GradReducer>) =>
    tidy(() => {
      const { loss } = mae.forward(Tensor.fromArray(images, [4, 3, 32, 32], { device }), { maskRatio: 0.75, noise });
      loss.backward(undefined, hooks ? { onGradReady: hooks.onGradReady } : undefined);
    });
  const params = mae.parameters().filter((p) => p.requiresGrad);
  run();
  const plain = params.map((p) => p.grad!.dataSync());
  for (const p of params) {
    p.grad!.dispose();
    p.grad = null;
  }
  const reducer = new GradReducer(comm, mae.parameters(), { bucketBytes: 64 * 1024, firstBucketBytes: 16 * 1024, bf16 });
  run(reducer);
  const stats = reducer.finish();
  let worst = 0;
  params.forEach((p, k) => {
    const got = p.grad!.dataSync();
    const want = plain[k]!;
    let num = 0, den = 0;
    for (let i = 0; i < got.length; i++) {
      num += (got[i]! - want[i]!) ** 2;
      den += want[i]! ** 2;
    }
    worst = Math.max(worst, Math.sqrt(num / Math.max(den, 1e-30)));
  });
  const tolerance = bf16 ? 2 ** -8 : comm.size === 1 ? 0 : 1e-6;
  if (worst > tolerance) failures.push(`MAE gradients (${bf16 ? 'bf16' : 'fp32'}, ${stats.buckets} buckets): relative difference ${worst}`);
  report[`mae_${bf16 ? 'bf16' : 'fp32'}`] = { buckets: stats.buckets, bytes: stats.bytes, worstRelativeDifference: worst };
  mae.dispose();
}

report.failures = failures;
report.passed = failures.length === 0;
done(failures.length === 0 ? 0 : 1);
