// npm run test:avx2: the op, model, optimizer and bf16 training tests as a CPU without AVX-512 runs them, on a CPU
// that has it: the prebuilt binary (prebuilds/linux-x64, built for x86-64-v3: AVX2 + FMA; npm run build:prebuilds
// makes it), with the library's AVX-512 kernels off (MAE_CPU_AVX512=off), oneDNN held to AVX2 (ONEDNN_MAX_CPU_ISA,
// where it has no bf16 kernel: bf16 products on the BLAS) and OpenBLAS to Haswell's kernels (OPENBLAS_CORETYPE).
// It checks first that the binary runs that way (mae info's view of it), then runs the tests against it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
if (`${process.platform}-${process.arch}` !== 'linux-x64') {
  console.log(`test:avx2: nothing to do on ${process.platform}-${process.arch} (it emulates an x86-64 CPU without AVX-512)`);
  process.exit(0);
}
const addon = join(root, 'prebuilds', 'linux-x64', 'masked-autoencoder.glibc.node');
if (!existsSync(addon)) {
  console.error(`test:avx2: ${addon} is missing: npm run build:prebuilds makes it`);
  process.exit(1);
}
const env = { ...process.env, MAE_ADDON: addon, MAE_CPU_AVX512: 'off', ONEDNN_MAX_CPU_ISA: 'AVX2', DNNL_MAX_CPU_ISA: 'AVX2', OPENBLAS_CORETYPE: 'Haswell' };

const probe = spawnSync(process.execPath, ['--input-type=module', '-e', `
  const { native, nativeBinary } = await import(${JSON.stringify(new URL('../dist/lib/native.js', import.meta.url).href)});
  const i = native.info();
  console.log(JSON.stringify({ binary: nativeBinary.path, avx512: i.avx512Kernels, isa: i.dnnl.isa ?? null, blas: i.blas, convert: i.bf16Convert, attention: i.bf16Attention }));
`], { cwd: root, env, encoding: 'utf8' });
if (probe.status !== 0) {
  console.error(`test:avx2: the prebuilt binary does not load: ${probe.stderr}`);
  process.exit(1);
}
const seen = JSON.parse(probe.stdout);
console.log(`test:avx2: ${JSON.stringify(seen)}`);
// (a CPU without AVX-512 says 'none'; oneDNN may be missing, or limited further by the CPU; OpenBLAS built without
// DYNAMIC_ARCH ignores OPENBLAS_CORETYPE)
const wrong = [
  !/^(off|none)\b/.test(seen.avx512) && `the AVX-512 kernels are '${seen.avx512}'`,
  seen.isa !== null && !['avx2', 'avx', 'sse41'].includes(seen.isa) && `oneDNN runs ${seen.isa}`,
  seen.blas.includes('DYNAMIC_ARCH') && !/\bHaswell\b/.test(seen.blas) && `OpenBLAS runs '${seen.blas}'`,
  seen.convert !== 'integer round-to-nearest-even' && `bf16 rounding is '${seen.convert}'`,
  seen.attention.startsWith('fused') && `bf16 attention runs '${seen.attention}'`,
].filter(Boolean);
if (wrong.length) {
  console.error(`test:avx2: the binary does not run as on a CPU without AVX-512: ${wrong.join('; ')}`);
  process.exit(1);
}

const tests = ['test/ops', 'test/nn', 'test/mae', 'test/optim', 'test/classify', 'test/autograd.test.ts', 'test/tensor.test.ts', 'test/train/bf16.test.ts'];
const r = spawnSync(join(root, 'node_modules', '.bin', 'vitest'), ['run', ...tests], { cwd: root, env, stdio: 'inherit' });
if (r.error) console.error(`test:avx2: vitest did not run: ${r.error.message}`);
process.exit(r.status ?? 1);
