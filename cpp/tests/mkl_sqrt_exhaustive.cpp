// MKL's AVX2-class float32 square roots as the kernels compute them (core/mkl_sqrt.h) against
// MKL's own kernels, on every float32 bit pattern in [0, 0x80800000): all non-negative values,
// +inf, the positive NaNs, -0 and the negative subnormals (MKL takes negative normals through its
// error handler, thousands of times slower, and mkl_sqrt.h gives them +qNaN without computing).
//
//   rmsprop_mkl_sqrt_exhaustive <library exporting MKL's kernels, e.g. torch/lib/libtorch_cpu.so>
//
// The kernels are MKL's internal entry points (mkl_vml_kernel_sSqrt_<path>HAynn(n, in, out)):
// L9 is the AVX2 path, H8 and EX the SSE4.2 one, E2 the portable one; their estimates come from
// this CPU's vrsqrtps, so the comparison holds for this CPU. Built with the avx2 kernel's flags,
// and run by hand (it takes about a minute; nothing in CI can assume a torch build that exports
// these names). Exit status 0 when every path found agrees on every pattern.
#include <dlfcn.h>
#include <immintrin.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/mkl_sqrt.h"

namespace {

using rmsprop_ext::SquareRoot;
using MklKernel = void (*)(int, const float*, float*);

template <SquareRoot kForm>
void ours(std::int64_t n, const float* in, float* out) {
  for (std::int64_t i = 0; i < n; i += 8) {
    _mm256_storeu_ps(out + i, rmsprop_ext::mkl_sqrt_avx2<kForm>(_mm256_loadu_ps(in + i)));
  }
}

struct Path {
  const char* symbol;
  void (*form)(std::int64_t, const float*, float*);
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <path of libtorch_cpu.so or another MKL build>\n", argv[0]);
    return 2;
  }
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::fprintf(stderr, "this CPU has no AVX2 and FMA: nothing to compare\n");
    return 2;
  }
  void* library = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (library == nullptr) {
    std::fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
    return 2;
  }
  const Path paths[] = {
      {"mkl_vml_kernel_sSqrt_L9HAynn", &ours<SquareRoot::kMklAvx2>},
      {"mkl_vml_kernel_sSqrt_H8HAynn", &ours<SquareRoot::kMklSse42>},
      {"mkl_vml_kernel_sSqrt_EXHAynn", &ours<SquareRoot::kMklSse42>},
      {"mkl_vml_kernel_sSqrt_E2HAynn", &ours<SquareRoot::kMklPortable>},
  };
  constexpr std::uint64_t kEnd = 0x80800000u;
  constexpr std::int64_t kChunk = std::int64_t{1} << 20;
  std::vector<float> in(kChunk), theirs(kChunk), mine(kChunk);
  int compared = 0;
  std::int64_t failures = 0;
  for (const Path& path : paths) {
    const auto mkl = reinterpret_cast<MklKernel>(dlsym(library, path.symbol));
    if (mkl == nullptr) {
      std::printf("%s: not in this library\n", path.symbol);
      continue;
    }
    std::int64_t differ = 0;
    for (std::uint64_t start = 0; start < kEnd; start += kChunk) {
      for (std::int64_t i = 0; i < kChunk; ++i) {
        const auto bits = static_cast<std::uint32_t>(start + static_cast<std::uint64_t>(i));
        std::memcpy(&in[static_cast<std::size_t>(i)], &bits, sizeof bits);
      }
      mkl(static_cast<int>(kChunk), in.data(), theirs.data());
      path.form(kChunk, in.data(), mine.data());
      for (std::int64_t i = 0; i < kChunk; ++i) {
        const auto at = static_cast<std::size_t>(i);
        if (std::memcmp(&theirs[at], &mine[at], sizeof(float)) != 0) {
          if (differ == 0) {
            std::uint32_t x = 0, a = 0, b = 0;
            std::memcpy(&x, &in[at], 4);
            std::memcpy(&a, &theirs[at], 4);
            std::memcpy(&b, &mine[at], 4);
            std::printf("  first difference: input 0x%08x, MKL 0x%08x, ours 0x%08x\n", x, a, b);
          }
          ++differ;
        }
      }
    }
    std::printf("%s: %lld of %llu patterns differ\n", path.symbol, static_cast<long long>(differ),
                static_cast<unsigned long long>(kEnd));
    failures += differ;
    ++compared;
  }
  if (compared == 0) {
    std::fprintf(stderr, "none of MKL's float32 square-root kernels found\n");
    return 2;
  }
  return failures == 0 ? 0 : 1;
}
