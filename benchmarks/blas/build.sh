#!/usr/bin/env bash
# Builds and runs the OpenBLAS vs oneDNN sgemm comparison (benchmarks only; the library itself links OpenBLAS alone),
# with --packed, the bf16 comparison of plain against oneDNN-blocked weights (packed_bench.cpp), and with --layouts the
# bf16 operand layouts of dW's dy^T and of attention's products (layouts_bench.cpp).
# Needs libopenblas-dev and libdnnl-dev (apt-get install -y libdnnl-dev).
#
#   benchmarks/blas/build.sh            build, then run the sgemm comparison with 2 threads, 3 rounds
#   benchmarks/blas/build.sh --packed   build, then run the plain / blocked bf16 weights comparison (2 threads, 5 rounds)
#   benchmarks/blas/build.sh --layouts  build, then run the operand layout comparison (2 threads, 5 rounds)
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
g++ -O3 -std=c++17 -fopenmp "$here/packed_bench.cpp" -o "$out/packed_bench" -ldnnl
g++ -O3 -std=c++17 -fopenmp "$here/layouts_bench.cpp" -o "$out/layouts_bench" -ldnnl
echo "built $out/sgemm_bench $out/packed_bench $out/layouts_bench"
[ "${1:-}" = "--no-run" ] && exit 0

threads="${THREADS:-2}"
date="$(date -u +%Y-%m-%d)"
res="$here/../results"
mkdir -p "$res"
tag=""
[ "$threads" != 2 ] && tag="threads$threads-"
if [ "${1:-}" = "--packed" ]; then
  "$out/packed_bench" "$threads" "${ROUNDS:-5}" "$res/packed-$tag$date.json"
  exit 0
fi
if [ "${1:-}" = "--layouts" ]; then
  "$out/layouts_bench" "$threads" "${ROUNDS:-5}" "$res/layouts-$tag$date.json"
  exit 0
fi
rounds="${ROUNDS:-3}"
echo "== OpenBLAS as configured (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}) =="
"$out/sgemm_bench" "$threads" "$rounds" "$res/blas-$tag$date.json"
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  echo
  echo "== OpenBLAS's own CPU detection (OPENBLAS_CORETYPE removed) =="
  env -u OPENBLAS_CORETYPE "$out/sgemm_bench" "$threads" "$rounds" "$res/blas-autodetect-$tag$date.json"
fi
