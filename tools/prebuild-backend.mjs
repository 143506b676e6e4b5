#!/usr/bin/env node
// The build backend tools/prebuild.mjs gives prebuildify in place of node-gyp (its --node-gyp option): prebuildify
// runs it as `<this> rebuild --target=V --devdir=D --arch=A --release|--debug` in its working folder (the staging
// folder build-prebuild/), then takes the addon from build/Release/ there. This backend builds with cmake-js instead:
//   cmake-js configure + build of the repository's CMakeLists.txt into build-prebuild/build/, with the cmake-js
//   options of $MAE_PREBUILD_DEFINES (--CDNAME=VALUE, one per line; set by prebuild.mjs), incrementally (no clean:
//   the options are applied again at every configure);
//   the side libraries put next to the addon, where prebuildify collects every *.so* into prebuilds/<platform>-<arch>/:
//   libgomp.so.1 (the OpenMP runtime the addon links, found through its RPATH $ORIGIN); libdnnl.so.2 (oneDNN, for
//   bf16 on the CPU: the addon opens it at run time from its own folder, native/cpu/dnnl.cpp) with the libOpenCL.so.1
//   it needs (the ICD loader, 70 kB, loaded first so that oneDNN finds it); and, when given in
//   $MAE_PREBUILD_CUDA_LIB, the libmae_cuda.so of the normal build.
// --target and --devdir do not matter: the addon is a Node-API build (package.json binary.napi_versions), compiled
// against node-api-headers whatever the Node version.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
if (argv[0] !== 'rebuild') {
  console.error(`prebuild-backend: expected prebuildify's 'rebuild' command, got: ${argv.join(' ')}`);
  process.exit(2);
}
const arch = argv.find((a) => a.startsWith('--arch='))?.slice('--arch='.length);
const debug = argv.includes('--debug');
const out = join(process.cwd(), 'build');
const defines = (process.env.MAE_PREBUILD_DEFINES ?? '').split('\n').filter(Boolean);
const common = ['--directory', root, '--out', out, ...(arch ? ['--arch', arch] : []), ...(debug ? ['--debug'] : [])];
const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
for (const step of [['configure', ...defines], ['build']]) {
  const r = spawnSync(process.execPath, [cmakeJs, step[0], ...common, ...step.slice(1)], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`prebuild-backend: cmake-js ${step[0]} failed (exit ${r.status})`);
    process.exit(1);
  }
}

const release = join(out, debug ? 'Debug' : 'Release');
const addon = join(release, 'mae.node');
const ldd = execFileSync('ldd', [addon], { encoding: 'utf8' });
const gomp = /libgomp\.so\.1 => (\S+)/.exec(ldd)?.[1];
if (!gomp) throw new Error(`prebuild-backend: the addon does not link libgomp.so.1?\n${ldd}`);
copyFileSync(gomp, join(release, 'libgomp.so.1'));
chmodSync(join(release, 'libgomp.so.1'), 0o755);
// oneDNN: the system's libdnnl.so.2 (libdnnl-dev, which the build needs, brings it) and what it needs beyond glibc,
// libstdc++ and libgomp
const dnnl = /libdnnl\.so\.2 \(.*\) => (\S+)/.exec(execFileSync('ldconfig', ['-p'], { encoding: 'utf8' }))?.[1];
if (!dnnl) throw new Error('prebuild-backend: libdnnl.so.2 not found (apt-get install -y libdnnl-dev)');
copyFileSync(dnnl, join(release, 'libdnnl.so.2'));
const ocl = /libOpenCL\.so\.1 => (\S+)/.exec(execFileSync('ldd', [dnnl], { encoding: 'utf8' }))?.[1];
if (ocl) copyFileSync(ocl, join(release, 'libOpenCL.so.1'));
else rmSync(join(release, 'libOpenCL.so.1'), { force: true });
const cuda = process.env.MAE_PREBUILD_CUDA_LIB;
if (cuda) {
  if (!existsSync(cuda)) throw new Error(`prebuild-backend: MAE_PREBUILD_CUDA_LIB ${cuda} does not exist`);
  copyFileSync(cuda, join(release, 'libmae_cuda.so'));
} else if (defines.includes('--CDMAE_CUDA=OFF')) {
  rmSync(join(release, 'libmae_cuda.so'), { force: true }); // a CUDA library of an earlier run is not to be shipped
}
