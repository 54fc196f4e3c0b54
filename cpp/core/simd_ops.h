// Thin wrappers that give scalars and each instruction set's vectors the same small vocabulary,
// so update_math.h can state the arithmetic once for all of them.
#pragma once

#include <cmath>
#include <type_traits>

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
// MKL's high-accuracy AVX-512 square root (vsSqrt/vdSqrt, the code path MKL takes on AVX-512
// CPUs, which torch.sqrt calls), step for step: the CPU's 14-bit reciprocal square-root estimate
// r, s = x * r and h = r / 2 (float64 refines both once, Newton-style), then s + (x - s * s) * h,
// each operation rounded as MKL rounds it. The result is 1 ulp below the IEEE square root on
// about 0.7% of float32 inputs; the estimate is the CPU's own instruction, so this gives MKL's
// bits on whatever CPU runs it. Radicands whose estimate is above 2^39 (float32) or 2^458
// (float64), i.e. x below about 2^-78 or 2^-916, are scaled by a power of two first, as MKL does;
// 0, -0 and +inf come back unchanged and negative inputs give MKL's NaN (+qNaN, where the CPU's
// square root gives -qNaN). Checked against MKL on all 2^32 float32 bit patterns, NaNs included,
// and 84 million float64 values; tests/test_torch_sqrt.py checks samples of both.
template <typename Vec>
struct MklSqrtParts {
  Vec root, half_estimate;
};

inline MklSqrtParts<__m512> mkl_sqrt_parts(__m512 x, __m512 estimate) {
  return {_mm512_mul_ps(x, estimate), _mm512_mul_ps(estimate, _mm512_set1_ps(0.5f))};
}

inline MklSqrtParts<__m512d> mkl_sqrt_parts(__m512d x, __m512d estimate) {
  const __m512d half = _mm512_set1_pd(0.5);
  const __m512d root = _mm512_mul_pd(x, estimate);
  const __m512d half_estimate = _mm512_mul_pd(estimate, half);
  const __m512d error = _mm512_fnmadd_pd(root, half_estimate, half);
  return {_mm512_fmadd_pd(root, error, root), _mm512_fmadd_pd(half_estimate, error, half_estimate)};
}

// The scaling and the special values: MKL's code for all lanes of a vector holding any radicand
// outside [2^-77 (float32) or 2^-915 (float64), +inf), NaN included; on the others it gives
// exactly what the short path gives, so which vectors take it never changes a result.
inline __m512 mkl_sqrt_rare(__m512 x) {
  const __m512 estimate = _mm512_rsqrt14_ps(x);
  const auto [root, half_estimate] = mkl_sqrt_parts(x, estimate);
  const __mmask16 tiny = _mm512_cmp_ps_mask(_mm512_set1_ps(0x1p39f), estimate, _CMP_LT_OS);
  const __m512 scaled_x = _mm512_mask_mul_ps(x, tiny, x, _mm512_set1_ps(0x1p78f));
  const __m512 scaled_root = _mm512_mask_mul_ps(root, tiny, root, _mm512_set1_ps(0x1p39f));
  const __m512 scaled_half =
      _mm512_mask_mul_ps(half_estimate, tiny, half_estimate, _mm512_set1_ps(0x1p-78f));
  const __m512 residual = _mm512_fnmadd_ps(scaled_root, scaled_root, scaled_x);
  const __m512 result = _mm512_fmadd_ps(residual, scaled_half, root);
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 unchanged = _mm512_cmp_ps_mask(x, zero, _CMP_EQ_OQ) |
                              _mm512_cmp_ps_mask(x, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ);
  const __mmask16 negative = _mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ);
  return _mm512_mask_mov_ps(_mm512_mask_mov_ps(result, unchanged, x), negative,
                            _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000)));
}

inline __m512d mkl_sqrt_rare(__m512d x) {
  const __m512d estimate = _mm512_rsqrt14_pd(x);
  const auto [root, half_estimate] = mkl_sqrt_parts(x, estimate);
  const __mmask8 tiny = _mm512_cmp_pd_mask(_mm512_set1_pd(0x1p458), estimate, _CMP_LT_OS);
  const __m512d scaled_x = _mm512_mask_mul_pd(x, tiny, x, _mm512_set1_pd(0x1p916));
  const __m512d scaled_root = _mm512_mask_mul_pd(root, tiny, root, _mm512_set1_pd(0x1p458));
  const __m512d scaled_half =
      _mm512_mask_mul_pd(half_estimate, tiny, half_estimate, _mm512_set1_pd(0x1p-916));
  const __m512d residual = _mm512_fnmadd_pd(scaled_root, scaled_root, scaled_x);
  const __m512d result = _mm512_fmadd_pd(residual, scaled_half, root);
  const __m512d zero = _mm512_setzero_pd();
  const __mmask8 unchanged = _mm512_cmp_pd_mask(x, zero, _CMP_EQ_OQ) |
                             _mm512_cmp_pd_mask(x, _mm512_set1_pd(INFINITY), _CMP_EQ_OQ);
  const __mmask8 negative = _mm512_cmp_pd_mask(x, zero, _CMP_LT_OQ);
  return _mm512_mask_mov_pd(_mm512_mask_mov_pd(result, unchanged, x), negative,
                            _mm512_castsi512_pd(_mm512_set1_epi64(0x7ff8000000000000)));
}

inline __m512 mkl_avx512_sqrt(__m512 x) {
  const __mmask16 ordinary =
      _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(x, _mm512_set1_ps(0x1p-77f), _CMP_GE_OQ), x,
                              _mm512_set1_ps(INFINITY), _CMP_LT_OQ);
  if (__builtin_expect(ordinary != 0xFFFF, 0)) {
    return mkl_sqrt_rare(x);
  }
  const auto [root, half_estimate] = mkl_sqrt_parts(x, _mm512_rsqrt14_ps(x));
  return _mm512_fmadd_ps(_mm512_fnmadd_ps(root, root, x), half_estimate, root);
}

inline __m512d mkl_avx512_sqrt(__m512d x) {
  const __mmask8 ordinary =
      _mm512_mask_cmp_pd_mask(_mm512_cmp_pd_mask(x, _mm512_set1_pd(0x1p-915), _CMP_GE_OQ), x,
                              _mm512_set1_pd(INFINITY), _CMP_LT_OQ);
  if (__builtin_expect(ordinary != 0xFF, 0)) {
    return mkl_sqrt_rare(x);
  }
  const auto [root, half_estimate] = mkl_sqrt_parts(x, _mm512_rsqrt14_pd(x));
  return _mm512_fmadd_pd(_mm512_fnmadd_pd(root, root, x), half_estimate, root);
}

// One lane of the AVX-512 kernel's peel and tail: ScalarOps, plus MKL's square root computed in
// a full vector, so that a lane rounds exactly as it would in the body.
template <typename T>
struct Avx512LaneOps : ScalarOps<T> {
  static T mkl_sqrt(T x) {
    if constexpr (std::is_same_v<T, float>) {
      return _mm512_cvtss_f32(mkl_avx512_sqrt(_mm512_set1_ps(x)));
    } else {
      return _mm512_cvtsd_f64(mkl_avx512_sqrt(_mm512_set1_pd(x)));
    }
  }
};

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
  static Vec mkl_sqrt(Vec a) { return mkl_avx512_sqrt(a); }
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
  static Vec mkl_sqrt(Vec a) { return mkl_avx512_sqrt(a); }
  static Vec max(Vec a, Vec b) { return _mm512_max_pd(a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return _mm512_fmadd_pd(a, b, c); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return _mm512_fnmadd_pd(a, b, c); }
};
#endif

}  // namespace rmsprop_ext
