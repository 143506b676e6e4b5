#!/bin/sh
# Runs the device check on a GPU machine that has no Node (/work/shared/DEVICE.md), from a copy of the repository
# holding .device/ and dist/ (made by tools/device-pack.sh), in one call:
#   sh tools/device-run.sh [outDir]          (outDir defaults to $OUT, else ./device-check-out)
# It unpacks Node, node-gyp-build and those of the addon's shared libraries that the machine lacks, puts the addon
# in build/Release, and runs dist/tools/device-check.js (its own budget: MAE_CHECK_BUDGET_S, default 420 s; an
# outer timeout 120 s later). If the NVIDIA driver is older than the CUDA 13 runtime that libmae_cuda.so was linked
# with, it rebuilds native/cuda with this machine's nvcc (sm_90) and uses that instead. MAE_CHECK_DEVICE=cpu runs
# the same on a machine without a GPU (the dry run).
set -eu
cd "$(dirname "$0")/.."
out=${1:-${OUT:-device-check-out}}
mkdir -p "$out"
tmp=${TMPDIR:-/tmp}/mae-device
mkdir -p "$tmp"
t0=$(date +%s)
unxz() { # file -> stdout; python's lzma when xz is missing
  if command -v xz >/dev/null 2>&1; then xz -dc "$1"; else python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$1"; fi
}
unxz .device/node.xz > "$tmp/node" && chmod +x "$tmp/node"
unxz .device/libs.tar.xz | tar -C "$tmp" -xf -
[ -d node_modules/node-gyp-build ] || unxz .device/node_modules.tar.xz | tar -xf -
mkdir -p "$tmp/need"
for lib in "$tmp"/lib/*; do
  name=$(basename "$lib")
  { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q "^[[:space:]]*$name " || cp "$lib" "$tmp/need/"
done
export LD_LIBRARY_PATH="$tmp/need${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p build/Release
cp .device/addon/mae.node .device/addon/libmae_cuda.so build/Release/
reason=$("$tmp/node" -e "import('./dist/lib/native.js').then((m) => { const c = m.native.info().cuda; console.log(c.available ? 'available' : c.reason); })" 2>&1 || true)
echo "CUDA before the check: $reason (unpacked in $(( $(date +%s) - t0 )) s)" | tee "$out/device-run.txt"
case "$reason" in
  *"driver is too old"*)
    echo "rebuilding native/cuda with $(command -v nvcc) for sm_90" | tee -a "$out/device-run.txt"
    cmake -S native/cuda -B "$tmp/cuda-build" -DMAE_CUDA_ARCHS=90 -DMAE_CUDA_EMULATOR=OFF -DCMAKE_BUILD_TYPE=Release >> "$out/device-run.txt" 2>&1
    cmake --build "$tmp/cuda-build" -j "$(nproc)" >> "$out/device-run.txt" 2>&1
    export MAE_CUDA_LIB="$tmp/cuda-build/libmae_cuda.so"
    ;;
esac
budget=${MAE_CHECK_BUDGET_S:-420}
status=0
timeout $((budget + 120)) "$tmp/node" dist/tools/device-check.js "$out" || status=$?
echo "device check exit status $status after $(( $(date +%s) - t0 )) s" | tee -a "$out/device-run.txt"
exit $status
