// MKL's AVX2-class square roots as the kernels compute them (core/mkl_sqrt.h) against MKL's own
// kernels:
// - float32, every bit pattern in [0, 0x80800000): all non-negative values, +inf, the positive
//   NaNs, -0 and the negative subnormals (MKL takes negative normals through its error handler,
//   thousands of times slower, and mkl_sqrt.h gives them +qNaN without computing);
// - float64, every input of the estimate (the exponent's parity and the top 23 significand bits:
//   2^24 of them), each with 2 random exponents of that parity and random low bits; every
//   exponent, both signs, with random significands (fewer for the negative normals); and the
//   boundaries and special values. About 50 million values.
//
//   rmsprop_mkl_sqrt_exhaustive <library exporting MKL's kernels, e.g. torch/lib/libtorch_cpu.so>
//
// The kernels are MKL's internal entry points (mkl_vml_kernel_[sd]Sqrt_<path>HAynn(n, in, out)):
// L9 is the AVX2 path, H8 and EX the SSE4.2 one, E2 the portable one; their estimates come from
// this CPU's vrsqrtps, so the comparison holds for this CPU. Built with the avx2 kernel's flags,
// and run by hand (it takes about a minute; nothing in CI can assume a torch build that exports
// these names). Exit status 0 when every path found agrees on every value.
#include <dlfcn.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "core/mkl_sqrt.h"

namespace {

using rmsprop_ext::SquareRoot;

template <typename T>
using MklKernel = void (*)(int, const T*, T*);

template <typename T>
using Form = void (*)(std::int64_t, const T*, T*);

template <SquareRoot kForm>
void ours(std::int64_t n, const float* in, float* out) {
  for (std::int64_t i = 0; i < n; i += 8) {
    _mm256_storeu_ps(out + i, rmsprop_ext::mkl_sqrt_avx2<kForm>(_mm256_loadu_ps(in + i)));
  }
}

template <SquareRoot kForm>
void ours(std::int64_t n, const double* in, double* out) {
  for (std::int64_t i = 0; i < n; i += 4) {
    _mm256_storeu_pd(out + i, rmsprop_ext::mkl_sqrt_avx2<kForm>(_mm256_loadu_pd(in + i)));
  }
}

template <typename T>
struct Path {
  const char* symbol;
  Form<T> form;
};

template <typename T>
using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

// Compares one chunk of inputs (a multiple of the vector width); returns how many differ and
// prints the first.
template <typename T>
std::int64_t compare_chunk(MklKernel<T> mkl, Form<T> form, const std::vector<T>& in,
                           std::vector<T>& theirs, std::vector<T>& mine, bool first) {
  const auto n = static_cast<std::int64_t>(in.size());
  mkl(static_cast<int>(n), in.data(), theirs.data());
  form(n, in.data(), mine.data());
  std::int64_t differ = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (std::memcmp(&theirs[i], &mine[i], sizeof(T)) != 0) {
      if (first && differ == 0) {
        Bits<T> x = 0, a = 0, b = 0;
        std::memcpy(&x, &in[i], sizeof(T));
        std::memcpy(&a, &theirs[i], sizeof(T));
        std::memcpy(&b, &mine[i], sizeof(T));
        std::printf("  first difference: input 0x%llx, MKL 0x%llx, ours 0x%llx\n",
                    static_cast<unsigned long long>(x), static_cast<unsigned long long>(a),
                    static_cast<unsigned long long>(b));
      }
      ++differ;
    }
  }
  return differ;
}

constexpr std::int64_t kChunk = std::int64_t{1} << 20;

// Fills `in` with the chunk of float32 patterns that starts at `start`.
void float32_patterns(std::uint64_t start, std::vector<float>& in) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto bits = static_cast<std::uint32_t>(start + i);
    std::memcpy(&in[i], &bits, sizeof bits);
  }
}

// The float64 inputs, padded with 1.0 to a whole number of chunks.
std::vector<double> float64_inputs() {
  std::vector<double> values;
  std::mt19937_64 random(20261205);
  const auto put = [&](std::uint64_t bits) {
    double value = 0.0;
    std::memcpy(&value, &bits, sizeof bits);
    values.push_back(value);
  };
  // The estimate's inputs: parity (bit 52) and top 23 significand bits, each with an exponent of
  // that parity in the ordinary range [1, 0x7FC] and random low bits.
  for (std::uint64_t input = 0; input < (std::uint64_t{1} << 24); ++input) {
    const std::uint64_t parity = input >> 23;
    for (int k = 0; k < 2; ++k) {
      const std::uint64_t exponent = (random() % 0x3FE) * 2 + 2 - parity;
      put((exponent << 52) | ((input & 0x7FFFFF) << 29) | (random() & 0x1FFFFFFF));
    }
  }
  // Every exponent and sign, the smallest and largest significands among random ones; the negative
  // normals take MKL's error handler, so fewer of them.
  constexpr std::uint64_t kSignificand = 0xFFFFFFFFFFFFF;
  for (std::uint64_t sign : {std::uint64_t{0}, std::uint64_t{1} << 63}) {
    for (std::uint64_t exponent = 0; exponent < 0x800; ++exponent) {
      const int count = sign != 0 && exponent != 0 ? 64 : 4096;
      for (std::uint64_t significand : {std::uint64_t{0}, std::uint64_t{1}, kSignificand}) {
        put(sign | (exponent << 52) | significand);
      }
      for (int k = 3; k < count; ++k) {
        put(sign | (exponent << 52) | (random() & kSignificand));
      }
    }
  }
  put(0x7FF0000000000001ull);  // a signalling NaN
  put(0xFFF0000000000001ull);
  while (values.size() % kChunk != 0) {
    put(0x3FF0000000000000ull);
  }
  return values;
}

template <typename T>
std::int64_t compare_path(void* library, const Path<T>& path, int& compared) {
  const auto mkl = reinterpret_cast<MklKernel<T>>(dlsym(library, path.symbol));
  if (mkl == nullptr) {
    std::printf("%s: not in this library\n", path.symbol);
    return 0;
  }
  std::vector<T> in(kChunk), theirs(kChunk), mine(kChunk);
  std::int64_t differ = 0;
  std::uint64_t values = 0;
  if constexpr (sizeof(T) == 4) {
    constexpr std::uint64_t kEnd = 0x80800000u;
    for (std::uint64_t start = 0; start < kEnd; start += kChunk) {
      float32_patterns(start, in);
      differ += compare_chunk<T>(mkl, path.form, in, theirs, mine, differ == 0);
      values += kChunk;
    }
  } else {
    static const std::vector<double> all = float64_inputs();
    for (std::size_t start = 0; start < all.size(); start += kChunk) {
      std::copy(all.begin() + static_cast<std::ptrdiff_t>(start),
                all.begin() + static_cast<std::ptrdiff_t>(start + kChunk), in.begin());
      differ += compare_chunk<T>(mkl, path.form, in, theirs, mine, differ == 0);
      values += kChunk;
    }
  }
  std::printf("%s: %lld of %llu values differ\n", path.symbol, static_cast<long long>(differ),
              static_cast<unsigned long long>(values));
  ++compared;
  return differ;
}

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
  const Path<float> float32_paths[] = {
      {"mkl_vml_kernel_sSqrt_L9HAynn", &ours<SquareRoot::kMklAvx2>},
      {"mkl_vml_kernel_sSqrt_H8HAynn", &ours<SquareRoot::kMklSse42>},
      {"mkl_vml_kernel_sSqrt_EXHAynn", &ours<SquareRoot::kMklSse42>},
      {"mkl_vml_kernel_sSqrt_E2HAynn", &ours<SquareRoot::kMklPortable>},
  };
  const Path<double> float64_paths[] = {
      {"mkl_vml_kernel_dSqrt_L9HAynn", &ours<SquareRoot::kMklAvx2>},
      {"mkl_vml_kernel_dSqrt_H8HAynn", &ours<SquareRoot::kMklSse42>},
      {"mkl_vml_kernel_dSqrt_EXHAynn", &ours<SquareRoot::kMklSse42>},
      {"mkl_vml_kernel_dSqrt_E2HAynn", &ours<SquareRoot::kMklPortable>},
  };
  int compared = 0;
  std::int64_t failures = 0;
  for (const auto& path : float32_paths) {
    failures += compare_path(library, path, compared);
  }
  for (const auto& path : float64_paths) {
    failures += compare_path(library, path, compared);
  }
  if (compared == 0) {
    std::fprintf(stderr, "none of MKL's square-root kernels found\n");
    return 2;
  }
  return failures == 0 ? 0 : 1;
}
