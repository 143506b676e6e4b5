// TensorView: a borrowed, typed, shaped pointer to contiguous memory on one device. Kernels take views; they never
// own memory. Shapes are row-major and contiguous; "rows" is the product of all dimensions but the last.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mae {

enum class DType : int { F32 = 0, I32 = 1, BF16 = 2 };
enum class DeviceType : int { CPU = 0, CUDA = 1 };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

inline size_t dtype_size(DType t) { return t == DType::BF16 ? 2 : 4; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::I32: return "int32";
    case DType::BF16: return "bfloat16";
  }
  return "?";
}

inline int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

struct TensorView {
  void* data = nullptr;
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  Device device;

  int64_t numel() const { return shape_numel(shape); }
  int ndim() const { return (int)shape.size(); }
  // size of dimension i; negative i counts from the end
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  int64_t last() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const { return shape.empty() ? 1 : numel() / shape.back(); }
  float* f32() const { return static_cast<float*>(data); }
  int32_t* i32() const { return static_cast<int32_t*>(data); }
};

}  // namespace mae
