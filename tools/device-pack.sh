#!/bin/sh
# Prepares, on a build machine, what the GPU machine needs to run the device check (/work/shared/DEVICE.md), all
# in git-ignored folders: .device/addon (mae.node + libmae_cuda.so built for sm_90 only, from build-device/),
# .device/node.xz (this Node, compressed), .device/libs.tar.xz (the addon's non-CUDA shared libraries: OpenBLAS,
# gfortran, quadmath, gomp), .device/node_modules.tar.xz (node-gyp-build, which lib/native.js requires), and dist/
# (the compiled TypeScript). Then one call on the GPU machine runs everything:
#   run(command: 'sh tools/device-run.sh "$OUT"', carry: ['.device', 'dist'], timeout_s: 590)
# and the results come back in $OUT (<date>-<gpu>.json and .log, to commit under benchmarks/results/device/).
set -eu
cd "$(dirname "$0")/.."
npx cmake-js compile --out build-device --CDMAE_CUDA_ARCHS=90 --CDMAE_CUDA_EMULATOR=OFF
npx tsc -p tsconfig.json
mkdir -p .device
rm -rf .device/addon && mkdir -p .device/addon
cp build-device/Release/mae.node build-device/Release/libmae_cuda.so .device/addon/
[ -f .device/node.xz ] || xz -T2 -6 -c "$(command -v node)" > .device/node.xz
rm -rf .device/lib && mkdir -p .device/lib
for lib in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libgomp.so.1; do
  path=$(ldd build-device/Release/mae.node | awk -v l="$lib" '$1 == l { print $3 }')
  [ -n "$path" ] && cp -L "$path" ".device/lib/$lib"
done
tar -C .device -cJf .device/libs.tar.xz lib && rm -rf .device/lib
tar -cJf .device/node_modules.tar.xz node_modules/node-gyp-build
# the run must not depend on anything else from node_modules: load the compiled library with only node-gyp-build
probe=$(mktemp -d)
mkdir -p "$probe/node_modules" && cp -r node_modules/node-gyp-build "$probe/node_modules/"
cp -r dist package.json "$probe/" && mkdir -p "$probe/build/Release" && cp .device/addon/* "$probe/build/Release/"
(cd "$probe" && node -e "import('./dist/lib/native.js').then((m) => console.log('device-pack: the packed addon loads:', m.native.info().cudaBuilt ? 'with' : 'WITHOUT', 'libmae_cuda.so'))")
(cd "$probe" && node -e "import('./dist/tools/cuda-cases.js').then((m) => console.log('device-pack: the device check has', m.opCases(true).length, 'cases'))")
rm -rf "$probe"
du -sh .device/* dist
total=$(du -sck .device dist | tail -1 | cut -f1)
echo "device-pack: .device and dist hold $((total / 1024)) MiB (what travels must stay under 64 MiB)"
[ "$total" -lt 60000 ] || { echo "device-pack: too large to carry" >&2; exit 1; }
