// mae_cuda_emulate: runs the bodies of the vectorised and fallback CUDA kernels on the host, for every lane of a
// grid-stride launch, and checks their index math against plain loops of each op's definition (no GPU needed).
// Built with the CUDA library (native/cuda/CMakeLists.txt); run by test/cuda/emulate.test.ts. Exit code 0 when every
// check passed.
#include "check.h"

namespace mae::cuda {
const Ops* ops_for(int) { return nullptr; }  // runtime.cu's op tables come from ops_table.cu, not linked here
}  // namespace mae::cuda

void emulate_elementwise();
void emulate_gelu();
void emulate_tokens();
void emulate_patch();
void emulate_gemm();

int main() {
  emulate_elementwise();
  emulate_gelu();
  emulate_tokens();
  emulate_patch();
  emulate_gemm();
  std::printf("%d tests, %d failed\n", emu::g_tests, emu::g_tests_failed);
  return emu::g_tests_failed ? 1 : 0;
}
