// What the standalone bf16 benchmarks here (packed_bench.cpp, layouts_bench.cpp) share: their arguments
// [threads=2] [rounds=5] [json_out], oneDNN's CPU engine and stream on that many OpenMP threads, and the timer.
#pragma once

#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>

struct Bench {
  int threads, rounds;
  const char* json_out;  // null: no JSON
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream st{eng};

  Bench(int argc, char** argv)
      : threads(argc > 1 ? std::atoi(argv[1]) : 2), rounds(argc > 2 ? std::atoi(argv[2]) : 5),
        json_out(argc > 3 ? argv[3] : nullptr) {
    omp_set_num_threads(threads);
    const dnnl_version_t* v = dnnl_version();
    std::printf("oneDNN %d.%d.%d, threads %d, best of %d rounds; ms per call\n", v->major, v->minor, v->patch, threads,
                rounds);
  }

  // json_out opened for writing, its opening lines written (oneDNN's version, threads, rounds); null, the reason
  // printed, when it cannot be opened
  FILE* open_json() const {
    FILE* f = std::fopen(json_out, "w");
    if (!f) {
      std::perror(json_out);
      return nullptr;
    }
    const dnnl_version_t* v = dnnl_version();
    std::fprintf(f, "{\n  \"onednn\": \"%d.%d.%d\",\n  \"threads\": %d,\n  \"rounds\": %d,\n", v->major, v->minor,
                 v->patch, threads, rounds);
    return f;
  }

  // seconds per call of f over `calls` calls, the stream drained at the end
  double seconds_per_call(int calls, const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; i++) f();
    st.wait();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
  }
};
