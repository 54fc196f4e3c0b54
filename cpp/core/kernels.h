// Entry points of kernel.cpp, which CMake compiles once per instruction set into its own namespace.
#pragma once

#include <cstdint>

#include "isa.h"
#include "rmsprop.h"

namespace rmsprop_ext {

// Whether the kernel of `isa` computes the square root `root` of T in its own registers (the others
// take a kMkl* form from the outside function). constexpr, so that each kernel instantiates its
// update only for the forms it has.
template <typename T>
constexpr bool computes_square_root(Isa isa, SquareRoot root) {
  switch (root) {
    case SquareRoot::kIeee:
      return true;
    case SquareRoot::kMklAvx512:
      return isa == Isa::kAvx512;
    case SquareRoot::kMklAvx2:
    case SquareRoot::kMklSse42:
    case SquareRoot::kMklPortable:
      return isa == Isa::kAvx2 || isa == Isa::kAvx512;
    case SquareRoot::kOutside:
      return false;
  }
  return false;
}

template <typename P, typename S>
using UpdateRangeFn = void (*)(const ParamBuffers<P, S>&, std::int64_t begin, std::int64_t end,
                               const Hyperparams&);

// update_range runs the RMSProp update; traffic_range the roofline kernel (see roofline_step).
#define RMSPROP_EXT_DECLARE_PAIR(P, S)                                                  \
  void update_range(const ParamBuffers<P, S>& b, std::int64_t begin, std::int64_t end,  \
                    const Hyperparams& hp);                                             \
  void traffic_range(const ParamBuffers<P, S>& b, std::int64_t begin, std::int64_t end, \
                     const Hyperparams& hp);
// sqrt_divide is the square root and divide of the update alone; mkl_sqrt a kMkl* square root as
// this kernel computes it. Both take only forms the kernel computes (computes_square_root); see
// rmsprop.h.
#define RMSPROP_EXT_DECLARE_KERNELS(ns)                                                            \
  namespace ns {                                                                                   \
  RMSPROP_EXT_FOR_EACH_STORAGE(RMSPROP_EXT_DECLARE_PAIR)                                           \
  void sqrt_divide(SquareRoot root, std::int64_t n, const float* numerator, const float* radicand, \
                   float* out);                                                                    \
  void sqrt_divide(SquareRoot root, std::int64_t n, const double* numerator,                       \
                   const double* radicand, double* out);                                           \
  void mkl_sqrt(SquareRoot form, std::int64_t n, const float* in, float* out);                     \
  void mkl_sqrt(SquareRoot form, std::int64_t n, const double* in, double* out);                   \
  }

RMSPROP_EXT_DECLARE_KERNELS(scalar)
#if RMSPROP_EXT_HAVE_AVX2
RMSPROP_EXT_DECLARE_KERNELS(avx2)
#endif
#if RMSPROP_EXT_HAVE_NEON
RMSPROP_EXT_DECLARE_KERNELS(neon)
#endif
#if RMSPROP_EXT_HAVE_AVX512
RMSPROP_EXT_DECLARE_KERNELS(avx512)
#endif

#undef RMSPROP_EXT_DECLARE_KERNELS
#undef RMSPROP_EXT_DECLARE_PAIR

}  // namespace rmsprop_ext
