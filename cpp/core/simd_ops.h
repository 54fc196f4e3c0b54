// Thin wrappers that give scalars and each instruction set's vectors the same small vocabulary,
// so update_math.h can state the arithmetic once for all of them.
#pragma once

#include <cmath>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace rmsprop_ext {

// One lane. mul_add is std::fma, a single rounding like the vector FMA instructions: inlined to
// one instruction where the file is compiled with FMA, a (correct, slower) libm call elsewhere,
// which only the scalar kernel asked for torch's fused rounding ever takes.
template <typename T>
struct ScalarOps {
  using Scalar = T;
  using Vec = T;
  static constexpr int kWidth = 1;
  static Vec load(const T* p) { return *p; }
  static void store(T* p, Vec v) { *p = v; }
  static Vec broadcast(T v) { return v; }
  static Vec add(Vec a, Vec b) { return a + b; }
  static Vec sub(Vec a, Vec b) { return a - b; }
  static Vec mul(Vec a, Vec b) { return a * b; }
  static Vec div(Vec a, Vec b) { return a / b; }
  static Vec sqrt(Vec a) { return std::sqrt(a); }
  // Like x86 max: the second operand when either is NaN or both are zeros.
  static Vec max(Vec a, Vec b) { return a > b ? a : b; }
  // a * b + c, rounded once
  static Vec mul_add(Vec a, Vec b, Vec c) { return std::fma(a, b, c); }
  // c - a * b, rounded once
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return std::fma(-a, b, c); }
};

#if defined(__AVX2__) && defined(__FMA__)
template <typename T>
struct Avx2Ops;

template <>
struct Avx2Ops<float> {
  using Scalar = float;
  using Vec = __m256;
  static constexpr int kWidth = 8;
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  static Vec broadcast(float v) { return _mm256_set1_ps(v); }
  static Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
  static Vec div(Vec a, Vec b) { return _mm256_div_ps(a, b); }
  static Vec sqrt(Vec a) { return _mm256_sqrt_ps(a); }
  static Vec max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return _mm256_fnmadd_ps(a, b, c); }
};

template <>
struct Avx2Ops<double> {
  using Scalar = double;
  using Vec = __m256d;
  static constexpr int kWidth = 4;
  static Vec load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, Vec v) { _mm256_storeu_pd(p, v); }
  static Vec broadcast(double v) { return _mm256_set1_pd(v); }
  static Vec add(Vec a, Vec b) { return _mm256_add_pd(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm256_sub_pd(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_pd(a, b); }
  static Vec div(Vec a, Vec b) { return _mm256_div_pd(a, b); }
  static Vec sqrt(Vec a) { return _mm256_sqrt_pd(a); }
  static Vec max(Vec a, Vec b) { return _mm256_max_pd(a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return _mm256_fmadd_pd(a, b, c); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return _mm256_fnmadd_pd(a, b, c); }
};
#endif

#if defined(__AVX512F__)
template <typename T>
struct Avx512Ops;

template <>
struct Avx512Ops<float> {
  using Scalar = float;
  using Vec = __m512;
  static constexpr int kWidth = 16;
  static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
  static Vec broadcast(float v) { return _mm512_set1_ps(v); }
  static Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
  static Vec div(Vec a, Vec b) { return _mm512_div_ps(a, b); }
  static Vec sqrt(Vec a) { return _mm512_sqrt_ps(a); }
  static Vec max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return _mm512_fnmadd_ps(a, b, c); }
};

template <>
struct Avx512Ops<double> {
  using Scalar = double;
  using Vec = __m512d;
  static constexpr int kWidth = 8;
  static Vec load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, Vec v) { _mm512_storeu_pd(p, v); }
  static Vec broadcast(double v) { return _mm512_set1_pd(v); }
  static Vec add(Vec a, Vec b) { return _mm512_add_pd(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm512_sub_pd(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm512_mul_pd(a, b); }
  static Vec div(Vec a, Vec b) { return _mm512_div_pd(a, b); }
  static Vec sqrt(Vec a) { return _mm512_sqrt_pd(a); }
  static Vec max(Vec a, Vec b) { return _mm512_max_pd(a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return _mm512_fmadd_pd(a, b, c); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return _mm512_fnmadd_pd(a, b, c); }
};
#endif

}  // namespace rmsprop_ext
