#!/usr/bin/env node
// npm run build:prebuilds: the prebuilt binaries that ship in the package, made with prebuildify (Node-API and libc
// tags, stripping, the side libraries copied next to the addon) over a cmake-js backend (tools/prebuild-backend.mjs):
//
//   build-prebuild/      prebuildify's working folder; build-prebuild/build/ the cmake-js build: MAE_PORTABLE=ON
//                        (x86-64-v3: AVX2 + FMA), MAE_STATIC_OPENBLAS=ON
//   prebuilds/linux-x64/
//     masked-autoencoder.glibc.node        the addon, named by prebuildify: a Node-API build carries no abi tag, and
//                                          --tag-libc adds glibc; node-gyp-build picks it by those tags. OpenBLAS inside
//     libgomp.so.1                         the OpenMP runtime, found through the addon's RPATH $ORIGIN
//     libdnnl.so.2, libOpenCL.so.1         oneDNN (bf16 matrix products on the CPU), opened by the addon at run time
//     libmae_cuda.so                       the CUDA library, when one was built (the addon looks next to itself)
//     SOURCES.json                         the digests of the sources they were built from (prebuild-sources.mjs)
//
// The CUDA library has no CPU-specific code, so the one from the normal build (build/Release, `npm run build`) is
// reused when it is newer than every file of native/cuda and was built for the default architectures; otherwise it
// is compiled here when nvcc is found. Flags: --no-cuda (ship no CUDA library), --cuda-rebuild (never reuse).
// Plain Node; needs what `npm run build` needs (cmake, g++, libopenblas-dev; nvcc for the CUDA library).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeManifest } from './prebuild-sources.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const noCuda = args.has('--no-cuda');
const cudaRebuild = args.has('--cuda-rebuild');
const DEFAULT_ARCHS = '80;86;90'; // native/cuda/CMakeLists.txt MAE_CUDA_ARCHS default

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
let cudaFrom = null; // the normal build's libmae_cuda.so, to ship as it is
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

const t0 = Date.now();
rmSync(outDir, { recursive: true, force: true }); // nothing of an earlier run (prebuildify only adds files)
mkdirSync(buildDir, { recursive: true });
process.env.MAE_PREBUILD_DEFINES = defs.join('\n');
process.env.MAE_PREBUILD_CUDA_LIB = cudaFrom ?? '';
const prebuildify = createRequire(import.meta.url)('prebuildify');
await new Promise((resolve, reject) =>
  prebuildify(
    {
      cwd: buildDir, // prebuildify takes the addon from <cwd>/build/Release: the backend builds there, not in build/
      out: root,
      name: 'masked-autoencoder',
      napi: true,
      tagLibc: true,
      strip: true,
      targets: [process.versions.node],
      nodeGyp: join(root, 'tools', 'prebuild-backend.mjs'),
    },
    (err) => (err ? reject(err) : resolve()),
  ),
).catch((e) => {
  console.error(`prebuild: prebuildify failed: ${e.message}`);
  process.exit(1);
});
log(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);

const addon = join(outDir, 'masked-autoencoder.glibc.node');
if (!existsSync(addon)) throw new Error(`prebuild: prebuildify made no ${addon} (made: ${readdirSync(outDir).join(', ')})`);
const ldd = execFileSync('ldd', [addon], { encoding: 'utf8' });
if (/libopenblas/.test(ldd)) throw new Error(`prebuild: the addon still links a shared OpenBLAS:\n${ldd}`);

// check: the copied addon loads from its new place and reports a static BLAS and its CUDA library next to it
const check = spawnSync(
  process.execPath,
  [
    '-e',
    `const m = require(${JSON.stringify(addon)}); const i = m.info();
     console.log(JSON.stringify({ blas: i.blas, blasLink: i.blasLink, cudaBuilt: i.cudaBuilt, cuda: i.cuda.available ? 'available' : i.cuda.reason, dnnl: i.dnnl }));
     if (i.blasLink !== 'static') process.exit(2);
     if (!i.dnnl.available || i.dnnl.library !== require('path').join(${JSON.stringify(outDir)}, 'libdnnl.so.2')) process.exit(3);`,
  ],
  { encoding: 'utf8', env: { ...process.env, MAE_CUDA_LIB: '', MAE_DNNL_LIB: '' } },
);
if (check.status !== 0) throw new Error(`prebuild: the prebuilt addon does not load:\n${check.stdout}${check.stderr}`);
log(`check: ${check.stdout.trim()}`);

// what the binaries were built from: `npm pack` (prepack) refuses binaries older than the sources
writeManifest(root, outDir, existsSync(join(outDir, 'libmae_cuda.so')));

let total = 0;
for (const f of readdirSync(outDir).sort()) {
  const n = statSync(join(outDir, f)).size;
  total += n;
  log(`${join('prebuilds', tuple, f)}  ${(n / 1e6).toFixed(1)} MB`);
}
log(`${(total / 1e6).toFixed(1)} MB in prebuilds/${tuple}`);
