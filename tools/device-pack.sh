#!/bin/sh
# Prepares, on a build machine, what the GPU machine needs to run the device check (/work/shared/DEVICE.md), all
# in git-ignored folders: .device/addon (mae.node + libmae_cuda.so built for sm_90 only, from build-device/),
# .device/node.xz (this Node, compressed), .device/libs.tar.xz (the addon's non-CUDA shared libraries: OpenBLAS,
# gfortran, quadmath, gomp), and dist/ (the compiled TypeScript). Then, on the GPU machine: sh tools/device-run.sh
set -eu
cd "$(dirname "$0")/.."
npx cmake-js compile --out build-device --CDMAE_CUDA_ARCHS=90
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
du -sh .device/* dist
