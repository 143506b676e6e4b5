#!/usr/bin/env bash
# Builds and runs the OpenBLAS vs oneDNN sgemm comparison (benchmarks only; the library itself links OpenBLAS alone).
# Needs libopenblas-dev and libdnnl-dev (apt-get install -y libdnnl-dev).
#
#   benchmarks/blas/build.sh            build, then run with 2 threads, 3 rounds
#   benchmarks/blas/build.sh --no-run   build only
#   THREADS=1 ROUNDS=3 benchmarks/blas/build.sh   other thread / round counts (results named blas-threads1-...)
#
# OpenBLAS (DYNAMIC_ARCH builds, as Debian's) picks its kernels at load time from the CPU, unless OPENBLAS_CORETYPE
# names a core. When OPENBLAS_CORETYPE is set in the environment (some sandboxes set Haswell), the comparison runs
# twice: as configured, and with the variable removed (OpenBLAS's own detection: Cooperlake, AVX-512, on Zen 5).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../../build-bench"
mkdir -p "$out"
inc=""
for d in /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas; do
  [ -f "$d/cblas.h" ] && inc="-I$d" && break
done
g++ -O3 -march=native -std=c++17 -fopenmp $inc "$here/sgemm_bench.cpp" -o "$out/sgemm_bench" -lopenblas -ldnnl
echo "built $out/sgemm_bench"
[ "${1:-}" = "--no-run" ] && exit 0

threads="${THREADS:-2}"
rounds="${ROUNDS:-3}"
date="$(date -u +%Y-%m-%d)"
res="$here/../results"
mkdir -p "$res"
tag=""
[ "$threads" != 2 ] && tag="threads$threads-"
echo "== OpenBLAS as configured (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}) =="
"$out/sgemm_bench" "$threads" "$rounds" "$res/blas-$tag$date.json"
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  echo
  echo "== OpenBLAS's own CPU detection (OPENBLAS_CORETYPE removed) =="
  env -u OPENBLAS_CORETYPE "$out/sgemm_bench" "$threads" "$rounds" "$res/blas-autodetect-$tag$date.json"
fi
