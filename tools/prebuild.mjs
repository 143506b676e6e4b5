#!/usr/bin/env node
// npm run prebuild: builds the prebuilt binaries that ship in the package under prebuilds/<platform>-<arch>/.
//
//   build-prebuild/      cmake-js build folder: MAE_PORTABLE=ON (x86-64-v3: AVX2 + FMA), MAE_STATIC_OPENBLAS=ON
//   prebuilds/linux-x64/
//     masked-autoencoder.napi.glibc.node   the addon (a name node-gyp-build accepts too), OpenBLAS inside
//     libgomp.so.1                         the OpenMP runtime, found through the addon's RPATH $ORIGIN
//     libmae_cuda.so                       the CUDA library, when one was built (the addon looks next to itself)
//
// The CUDA library has no CPU-specific code, so the one from the normal build (build/Release, `npm run build`) is
// reused when it is newer than every file of native/cuda and was built for the default architectures; otherwise it
// is compiled here when nvcc is found. Flags: --no-cuda (ship no CUDA library), --cuda-rebuild (never reuse).
// Plain Node; needs what `npm run build` needs (cmake, g++, libopenblas-dev; nvcc for the CUDA library).
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const noCuda = args.has('--no-cuda');
const cudaRebuild = args.has('--cuda-rebuild');
const DEFAULT_ARCHS = '80;86;89;90'; // native/cuda/CMakeLists.txt MAE_CUDA_ARCHS default

if (process.platform !== 'linux') {
  console.error(`prebuild: only linux prebuilt binaries are made (this is ${process.platform}-${process.arch})`);
  process.exit(1);
}
const tuple = `${process.platform}-${process.arch}`;
const buildDir = join(root, 'build-prebuild');
const outDir = join(root, 'prebuilds', tuple);

function log(msg) {
  console.log(`prebuild: ${msg}`);
}

// newest source file (not README) under dir
function mtimeOfNewest(dir) {
  let t = 0;
  for (const f of readdirSync(dir)) {
    const s = statSync(join(dir, f));
    if (s.isDirectory()) t = Math.max(t, mtimeOfNewest(join(dir, f)));
    else if (/\.(cu|cuh|cpp|h)$|^CMakeLists\.txt$/.test(f)) t = Math.max(t, s.mtimeMs);
  }
  return t;
}

// the normal build's libmae_cuda.so, when it can be shipped as is
function reusableCudaLib() {
  const lib = join(root, 'build', 'Release', 'libmae_cuda.so');
  const cache = join(root, 'build', 'CMakeCache.txt');
  if (!existsSync(lib) || !existsSync(cache)) return { why: 'build/Release/libmae_cuda.so does not exist' };
  const archs = /^MAE_CUDA_ARCHS:STRING=(.*)$/m.exec(readFileSync(cache, 'utf8'))?.[1] ?? DEFAULT_ARCHS;
  if (archs !== DEFAULT_ARCHS) return { why: `build/ was configured with MAE_CUDA_ARCHS=${archs}, not ${DEFAULT_ARCHS}` };
  if (statSync(lib).mtimeMs < mtimeOfNewest(join(root, 'native', 'cuda')))
    return { why: 'build/Release/libmae_cuda.so is older than native/cuda' };
  return { lib };
}

const defs = ['--CDMAE_PORTABLE=ON', '--CDMAE_STATIC_OPENBLAS=ON'];
let cudaFrom = null; // the libmae_cuda.so to ship
if (noCuda) {
  defs.push('--CDMAE_CUDA=OFF', '--CDMAE_CUDA_SHIPPED=OFF');
  log('--no-cuda: no CUDA library');
} else {
  const r = cudaRebuild ? { why: '--cuda-rebuild' } : reusableCudaLib();
  if (r.lib) {
    cudaFrom = r.lib;
    defs.push('--CDMAE_CUDA=OFF', '--CDMAE_CUDA_SHIPPED=ON');
    log(`reusing ${r.lib} (built for sm ${DEFAULT_ARCHS})`);
  } else {
    defs.push('--CDMAE_CUDA=AUTO', '--CDMAE_CUDA_SHIPPED=OFF', `--CDMAE_CUDA_ARCHS=${DEFAULT_ARCHS}`);
    log(`not reusing the normal build's CUDA library (${r.why}); compiling it here if nvcc is found`);
  }
}

const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const t0 = Date.now();
// configure every time (the -D choices above may differ from the last run), then build incrementally
for (const step of [['configure', ...defs], ['build']]) {
  const res = spawnSync(process.execPath, [cmakeJs, ...step, '--out', buildDir], { cwd: root, stdio: 'inherit' });
  if (res.status !== 0) {
    console.error(`prebuild: cmake-js ${step[0]} failed (exit ${res.status})`);
    process.exit(1);
  }
}
log(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
const rel = join(buildDir, 'Release');
if (!cudaFrom && existsSync(join(rel, 'libmae_cuda.so'))) cudaFrom = join(rel, 'libmae_cuda.so');

rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });

function strip(file) {
  const r = spawnSync('strip', ['--strip-unneeded', file], { stdio: 'inherit' });
  if (r.status !== 0) log(`warning: could not strip ${file}`);
}

const addon = join(outDir, 'masked-autoencoder.napi.glibc.node');
copyFileSync(join(rel, 'mae.node'), addon);
strip(addon);

// libgomp: whatever the addon is linked against, copied next to it (found through RPATH $ORIGIN)
const ldd = execFileSync('ldd', [addon], { encoding: 'utf8' });
const gomp = /libgomp\.so\.1 => (\S+)/.exec(ldd)?.[1];
if (!gomp) throw new Error(`prebuild: the addon does not link libgomp.so.1?\n${ldd}`);
copyFileSync(gomp, join(outDir, 'libgomp.so.1'));
chmodSync(join(outDir, 'libgomp.so.1'), 0o755);
if (/libopenblas/.test(ldd)) throw new Error(`prebuild: the addon still links a shared OpenBLAS:\n${ldd}`);

if (cudaFrom) {
  copyFileSync(cudaFrom, join(outDir, 'libmae_cuda.so'));
  strip(join(outDir, 'libmae_cuda.so'));
}

// check: the copied addon loads from its new place and reports a static BLAS and its CUDA library next to it
const check = spawnSync(
  process.execPath,
  [
    '-e',
    `const m = require(${JSON.stringify(addon)}); const i = m.info();
     console.log(JSON.stringify({ blas: i.blas, blasLink: i.blasLink, cudaBuilt: i.cudaBuilt, cuda: i.cuda.available ? 'available' : i.cuda.reason }));
     if (i.blasLink !== 'static') process.exit(2);`,
  ],
  { encoding: 'utf8', env: { ...process.env, MAE_CUDA_LIB: '' } },
);
if (check.status !== 0) throw new Error(`prebuild: the prebuilt addon does not load:\n${check.stdout}${check.stderr}`);
log(`check: ${check.stdout.trim()}`);

let total = 0;
for (const f of readdirSync(outDir).sort()) {
  const n = statSync(join(outDir, f)).size;
  total += n;
  log(`${join('prebuilds', tuple, f)}  ${(n / 1e6).toFixed(1)} MB`);
}
log(`${(total / 1e6).toFixed(1)} MB in prebuilds/${tuple}`);
