// The CPU op table and the thread setting: n OpenMP threads, and a single-threaded BLAS that each of them calls on
// its own block (gemm.cpp).
#include <cblas.h>
#include <omp.h>

#include "cpu.h"

extern "C" void openblas_set_num_threads(int);

namespace mae {

const Ops& cpu_ops() {
  static const Ops table = {
      "cpu",
      cpu::allocator,
      cpu::copy_bytes,
      cpu::copy_bytes,
      cpu::read_begin,
      cpu::read_end,
      cpu::linear_forward,
      cpu::linear_backward,
      cpu::layernorm_forward,
      cpu::layernorm_backward,
      cpu::add_layernorm_forward,
      cpu::gelu_forward,
      cpu::gelu_backward,
      cpu::bias_gelu_forward,
      cpu::bias_gelu_backward,
      cpu::attention_forward,
      cpu::attention_backward,
      cpu::masked_mse_forward,
      cpu::masked_mse_backward,
      cpu::cross_entropy_forward,
      cpu::cross_entropy_backward,
      cpu::batchnorm_forward,
      cpu::batchnorm_backward,
      cpu::gather_rows,
      cpu::scatter_add_rows,
      cpu::cat_tokens,
      cpu::slice_tokens,
      cpu::add,
      cpu::mul,
      cpu::sum_to,
      cpu::axpby,
      cpu::sum,
      cpu::mean_tokens,
      cpu::mean_tokens_backward,
      cpu::fill,
      cpu::patchify,
      cpu::unpatchify,
      cpu::adamw_step,
  };
  return table;
}

void set_num_threads(int n) {
  omp_set_num_threads(n);
  openblas_set_num_threads(1);
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace mae
