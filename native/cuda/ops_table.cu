// The per-device CUDA op tables: the same entries as the CPU table (native/cpu/ops_table.cpp), with the allocator
// and the host copies bound to one device (the Allocator interface takes no device argument, so each device gets
// its own instantiation).
#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

template <int D>
void copy_to_host(void* dst, const void* src, size_t bytes) {
  download(context(D), dst, src, bytes);
}

template <int D>
void copy_from_host(void* dst, const void* src, size_t bytes) {
  upload(context(D), dst, src, bytes);
}

template <int D>
void* read_begin_d(const void* src, size_t bytes) {
  return read_begin(D, src, bytes);
}

template <int D>
Ops make_table() {
  return Ops{
      "cuda",
      allocator_for(D),
      copy_to_host<D>,
      copy_from_host<D>,
      read_begin_d<D>,
      read_end,
      linear_forward,
      linear_backward,
      layernorm_forward,
      layernorm_backward,
      add_layernorm_forward,
      gelu_forward,
      gelu_backward,
      bias_gelu_forward,
      bias_gelu_backward,
      attention_forward,
      attention_backward,
      masked_mse_forward,
      masked_mse_backward,
      cross_entropy_forward,
      cross_entropy_backward,
      batchnorm_forward,
      batchnorm_backward,
      gather_rows,
      scatter_add_rows,
      cat_tokens,
      slice_tokens,
      add,
      mul,
      sum_to,
      axpby,
      sum,
      mean_tokens,
      mean_tokens_backward,
      fill,
      patchify,
      unpatchify,
      adamw_step,
  };
}

}  // namespace

const Ops* ops_for(int device) {
  static const Ops tables[kMaxDevices] = {make_table<0>(), make_table<1>(), make_table<2>(), make_table<3>(),
                                          make_table<4>(), make_table<5>(), make_table<6>(), make_table<7>()};
  if (device < 0 || device >= kMaxDevices) throw Error("cuda:" + std::to_string(device) + " is out of range");
  return &tables[device];
}

}  // namespace mae::cuda
