// MKL's vector square roots (vsSqrt/vdSqrt in high-accuracy mode, which torch.sqrt calls), one per
// code path that MKL picks by CPU, computed operation for operation as MKL computes them, so that
// the update's single pass gives torch.sqrt's bits (rmsprop.h's SquareRoot::kMkl* forms). Each was
// read from MKL's kernel in libtorch_cpu (mkl_vml_kernel_[sd]Sqrt_<path>HAynn; the paths are
// reached on one CPU with MKL_ENABLE_INSTRUCTIONS, or MKL_VML_DEBUG_CPU_TYPE for the portable one)
// and checked against it on every float32 bit pattern and on every float64 estimate input
// (cpp/tests/mkl_sqrt_exhaustive.cpp).
#pragma once

#include <cmath>
#include <type_traits>

#include "rmsprop.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

// Each kernel compiles these with its own instruction set, so they must not be shared between
// kernels by the linker (static: one copy per kernel, never merged), and the ones on the update's
// path are inlined into its loop: a call per vector would spill every vector register (all are
// caller-saved), and an exported one is also called through the PLT.
#define RMSPROP_EXT_INLINE_ALWAYS static inline __attribute__((always_inline))

namespace rmsprop_ext {

#if defined(__AVX2__) && defined(__FMA__)
// float32, 8 lanes: MKL's AVX2 (L9), SSE4.2 (H8 and EX, which compute alike) and portable (E2)
// code paths, which share their steps:
//   r, an estimate of 1 / sqrt(x): the CPU's 12-bit vrsqrtps (so these are MKL's bits on the CPU
//      that runs both), or for kMklPortable 1 / sqrt(x) in IEEE arithmetic with its last 11
//      significand bits cleared (the same bits on every CPU);
//   s = x * r and h = r / 2;
//   e = 1/2 - s * h;  s' = s + s * e  and  h' = h + h * e  (one Newton step);
//   result = s' + h' * (x - s' * s').
// kMklAvx2 fuses each multiply-add; the others round every product and sum. MKL takes apart the
// lanes whose radicand is not a positive normal float, or (the unfused paths, where s' * s' could
// overflow) lies above 0x7F7FF000: it computes them in double and rounds, which gives the IEEE
// square root's bits (checked on each of them), +0 and -0 stay, and a negative radicand gives
// +qNaN where the CPU's square root gives -qNaN. The steps after r are mkl_refined_root's, the
// estimate mkl_estimate's and the test mkl_ordinary_lanes', on 8 lanes here; the avx512 kernel
// runs the same steps on 16 (mkl_sqrt_avx512).

// The lane operations of mkl_refined_root, one overload per vector width, declared before it: the
// template is written once for both widths, and compiler vector types are found by no
// argument-dependent lookup, so only overloads visible here serve it.
RMSPROP_EXT_INLINE_ALWAYS __m256 lane_mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
RMSPROP_EXT_INLINE_ALWAYS __m256 lane_add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
RMSPROP_EXT_INLINE_ALWAYS __m256 lane_sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
RMSPROP_EXT_INLINE_ALWAYS __m256 lane_fmadd(__m256 a, __m256 b, __m256 c) {
  return _mm256_fmadd_ps(a, b, c);
}
RMSPROP_EXT_INLINE_ALWAYS __m256 lane_fnmadd(__m256 a, __m256 b, __m256 c) {
  return _mm256_fnmadd_ps(a, b, c);
}
RMSPROP_EXT_INLINE_ALWAYS void lane_splat(__m256& v, float value) { v = _mm256_set1_ps(value); }
RMSPROP_EXT_INLINE_ALWAYS __m256 lane_half(__m256 v) {
  return _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_castps_si256(v), _mm256_set1_epi32(1 << 23)));
}
#if defined(__AVX512F__)
RMSPROP_EXT_INLINE_ALWAYS __m512 lane_mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
RMSPROP_EXT_INLINE_ALWAYS __m512 lane_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
RMSPROP_EXT_INLINE_ALWAYS __m512 lane_sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
RMSPROP_EXT_INLINE_ALWAYS __m512 lane_fmadd(__m512 a, __m512 b, __m512 c) {
  return _mm512_fmadd_ps(a, b, c);
}
RMSPROP_EXT_INLINE_ALWAYS __m512 lane_fnmadd(__m512 a, __m512 b, __m512 c) {
  return _mm512_fnmadd_ps(a, b, c);
}
RMSPROP_EXT_INLINE_ALWAYS void lane_splat(__m512& v, float value) { v = _mm512_set1_ps(value); }
RMSPROP_EXT_INLINE_ALWAYS __m512 lane_half(__m512 v) {
  return _mm512_castsi512_ps(_mm512_sub_epi32(_mm512_castps_si512(v), _mm512_set1_epi32(1 << 23)));
}
#endif

// The steps after the estimate, on any number of lanes: all are lane-wise IEEE operations, so the
// bits do not depend on the vector width.
template <SquareRoot kForm, typename Vec>
RMSPROP_EXT_INLINE_ALWAYS Vec mkl_refined_root(Vec x, Vec estimate) {
  static_assert(kForm == SquareRoot::kMklAvx2 || kForm == SquareRoot::kMklSse42 ||
                kForm == SquareRoot::kMklPortable);
  Vec half;
  lane_splat(half, 0.5f);
  const Vec s = lane_mul(x, estimate);
  // h = r / 2 exactly, by one less in the exponent: an integer operation, which Zen's cores run
  // beside their two multiply and two add pipes. The estimate of a lane that the steps serve is a
  // normal float far from the smallest, and the others' results are replaced.
  const Vec h = lane_half(estimate);
  if constexpr (kForm == SquareRoot::kMklAvx2) {
    const Vec e = lane_fnmadd(s, h, half);
    const Vec s1 = lane_fmadd(s, e, s);
    const Vec h1 = lane_fmadd(e, h, h);
    return lane_fmadd(h1, lane_fnmadd(s1, s1, x), s1);
  } else {
    // MKL's operations in MKL's order. A form with h left out (every rounded value is 2 or 4 times
    // one of these, so the sums with a halved addend become multiply-adds by 1/2) has one operation
    // fewer but puts nine of eleven on the multiply pipes; on a Zen 5 core the in-cache step on the
    // avx2 kernel took 4% longer with it (docs/storage_speed.md).
    const Vec e = lane_sub(half, lane_mul(s, h));
    const Vec s1 = lane_add(s, lane_mul(s, e));
    const Vec h1 = lane_add(h, lane_mul(h, e));
    return lane_add(s1, lane_mul(h1, lane_sub(x, lane_mul(s1, s1))));
  }
}

// MKL's own test: bits + 0x7F800000 above its limit, signed, marks the lanes it takes apart.
template <SquareRoot kForm>
constexpr int kMklOrdinaryLimit =
    kForm == SquareRoot::kMklAvx2 ? static_cast<int>(0xFEFFFFFFu) : static_cast<int>(0xFEFFF000u);

// The estimate r of 1 / sqrt(x) of each lane.
template <SquareRoot kForm>
RMSPROP_EXT_INLINE_ALWAYS __m256 mkl_estimate(__m256 x) {
  if constexpr (kForm == SquareRoot::kMklPortable) {
    const __m256 reciprocal = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_sqrt_ps(x));
    return _mm256_and_ps(reciprocal, _mm256_castsi256_ps(_mm256_set1_epi32(-2048)));
  } else {
    return _mm256_rsqrt_ps(x);
  }
}

// The lanes MKL computes with the steps, set; the others it takes apart. The test is asked as
// "every lane at or below the limit" with the limit on the left: for `shifted > limit` GCC emits a
// minimum and an equality, and a test of the vector costs two operations where a sign mask costs
// one (this path is bound by its vector operations).
template <SquareRoot kForm>
RMSPROP_EXT_INLINE_ALWAYS __m256i mkl_ordinary_lanes(__m256 x) {
  const __m256i shifted = _mm256_add_epi32(_mm256_castps_si256(x), _mm256_set1_epi32(0x7F800000));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(kMklOrdinaryLimit<kForm> + 1), shifted);
}

template <SquareRoot kForm>
RMSPROP_EXT_INLINE_ALWAYS __m256 mkl_sqrt_avx2(__m256 x) {
  const __m256 result = mkl_refined_root<kForm>(x, mkl_estimate<kForm>(x));
  const __m256i ordinary = mkl_ordinary_lanes<kForm>(x);
  if (__builtin_expect(_mm256_movemask_ps(_mm256_castsi256_ps(ordinary)) == 0xFF, 1)) {
    return result;
  }
  const __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  const __m256 apart = _mm256_blendv_ps(
      _mm256_sqrt_ps(x), _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000)), negative);
  return _mm256_blendv_ps(apart, result, _mm256_castsi256_ps(ordinary));
}

// float64, 4 lanes: the same three code paths (mkl_vml_kernel_dSqrt_<path>HAynn), which share
// their steps:
//   x = m * 4^k with m in [1, 4), from the bits: the exponent's parity picks [1, 2) or [2, 4);
//   r, an estimate of 1 / sqrt(m) from m's top 23 significand bits as a float32: the CPU's
//      vrsqrtps, or for kMklPortable 1 / sqrt(m) in float32 IEEE arithmetic with its last 11 bits
//      cleared, as for float32;
//   y = r * 2^-k (exact), an estimate of 1 / sqrt(x), and e = 1 - x * y^2, its relative error;
//   q = e * (c0 + e * (c1 + e * (c2 + e * c3))), the series of 1 / sqrt(1 - e) - 1 cut after e^4
//      (MKL's coefficients, within 2^-40 of 1/2, 3/8, 5/16, 35/128);
//   result = x * y + x * (y * q).
// kMklAvx2 fuses e, the series and the final sum. The unfused paths split x into xh (its top 26
// significand bits) and xl = x - xh, so that e = (1 - (y * y) * xh) - (y * y) * xl and result =
// xh * y + (xl * y + (q * y) * x), each operation rounded. MKL takes apart the lanes outside
// [2^-1022, 2^1022) (subnormals, zeros, the top binade, infinities, NaNs and negative inputs):
// they get the IEEE square root there (checked on each class), with +qNaN for a negative radicand.
template <SquareRoot kForm>
RMSPROP_EXT_INLINE_ALWAYS __m256d mkl_sqrt_avx2(__m256d x) {
  static_assert(kForm == SquareRoot::kMklAvx2 || kForm == SquareRoot::kMklSse42 ||
                kForm == SquareRoot::kMklPortable);
  const __m256i bits = _mm256_castpd_si256(x);
  const __m256i exponent_bits = _mm256_and_si256(bits, _mm256_set1_epi64x(0x7FF0000000000000));
  // Set where the biased exponent is even, i.e. where m is in [2, 4).
  const __m256i even = _mm256_andnot_si256(bits, _mm256_set1_epi64x(0x0010000000000000));
  const __m256i m_bits =
      _mm256_or_si256(_mm256_add_epi64(even, _mm256_set1_epi64x(0x07F0000000000000)),
                      _mm256_and_si256(bits, _mm256_set1_epi64x(0x001FFFFFE0000000)));
  const __m128 m = _mm_castsi128_ps(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
      _mm256_srli_epi64(m_bits, 29), _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6))));
  __m128 estimate;
  if constexpr (kForm == SquareRoot::kMklPortable) {
    const __m128 reciprocal = _mm_div_ps(_mm_set1_ps(1.0f), _mm_sqrt_ps(m));
    estimate = _mm_and_ps(reciprocal, _mm_castsi128_ps(_mm_set1_epi32(-2048)));
  } else {
    estimate = _mm_rsqrt_ps(m);
  }
  // 2^-k, from the exponent with a wrapping integer sum and a halving shift.
  const __m256i scale = _mm256_srli_epi64(
      _mm256_add_epi64(_mm256_sub_epi64(even, exponent_bits),
                       _mm256_set1_epi64x(static_cast<long long>(0xBFD0000000000000u))),
      1);
  const __m256d y = _mm256_mul_pd(_mm256_cvtps_pd(estimate), _mm256_castsi256_pd(scale));
  const __m256d y_squared = _mm256_mul_pd(y, y);
  const __m256d one = _mm256_set1_pd(1.0);
  const __m256d c3 = _mm256_castsi256_pd(_mm256_set1_epi64x(0x3FD1800032338CBB));
  const __m256d c2 = _mm256_castsi256_pd(_mm256_set1_epi64x(0x3FD40000B13001D9));
  const __m256d c1 = _mm256_castsi256_pd(_mm256_set1_epi64x(0x3FD80000000000F6));
  const __m256d c0 = _mm256_castsi256_pd(_mm256_set1_epi64x(0x3FDFFFFFFFFFFE71));
  __m256d result;
  if constexpr (kForm == SquareRoot::kMklAvx2) {
    const __m256d e = _mm256_fnmadd_pd(x, y_squared, one);
    __m256d series = _mm256_fmadd_pd(e, c3, c2);
    series = _mm256_fmadd_pd(e, series, c1);
    series = _mm256_fmadd_pd(e, series, c0);
    const __m256d q = _mm256_mul_pd(e, series);
    result = _mm256_fmadd_pd(x, y, _mm256_mul_pd(x, _mm256_mul_pd(y, q)));
  } else {
    const __m256d x_high = _mm256_and_pd(
        x, _mm256_castsi256_pd(_mm256_set1_epi64x(static_cast<long long>(0xFFFFFFFFF8000000u))));
    const __m256d x_low = _mm256_sub_pd(x, x_high);
    const __m256d e = _mm256_sub_pd(_mm256_sub_pd(one, _mm256_mul_pd(y_squared, x_high)),
                                    _mm256_mul_pd(y_squared, x_low));
    __m256d series = _mm256_add_pd(_mm256_mul_pd(e, c3), c2);
    series = _mm256_add_pd(_mm256_mul_pd(series, e), c1);
    series = _mm256_add_pd(_mm256_mul_pd(series, e), c0);
    const __m256d q = _mm256_mul_pd(series, e);
    const __m256d low_part =
        _mm256_add_pd(_mm256_mul_pd(x_low, y), _mm256_mul_pd(_mm256_mul_pd(q, y), x));
    result = _mm256_add_pd(_mm256_mul_pd(x_high, y), low_part);
  }
  // MKL's test on the high words, on whole lanes: bits + 0x7FF0...0 is below 0xFFC0...0 (signed)
  // exactly for the bits of [2^-1022, 2^1022).
  const __m256i shifted = _mm256_add_epi64(bits, _mm256_set1_epi64x(0x7FF0000000000000));
  const __m256i ordinary =
      _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(0xFFC0000000000000u)), shifted);
  if (__builtin_expect(_mm256_movemask_pd(_mm256_castsi256_pd(ordinary)) == 0xF, 1)) {
    return result;
  }
  const __m256d negative = _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_LT_OQ);
  const __m256d apart = _mm256_blendv_pd(
      _mm256_sqrt_pd(x), _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FF8000000000000)), negative);
  return _mm256_blendv_pd(apart, result, _mm256_castsi256_pd(ordinary));
}
#endif

#if defined(__AVX512F__)
// kMklAvx512: MKL's AVX-512 code path (mkl_vml_kernel_[sd]Sqrt_Z0HAynn), step for step: the
// CPU's 14-bit reciprocal square-root estimate r, s = x * r and h = r / 2 (float64 refines both
// once, Newton-style), then s + (x - s * s) * h, each operation rounded as MKL rounds it. The
// result is 1 ulp below the IEEE square root on about 0.7% of float32 inputs; the estimate is the
// CPU's own instruction, so this gives MKL's bits on whatever CPU runs it. Radicands whose estimate
// is above 2^39 (float32) or 2^458 (float64), i.e. x below about 2^-78 or 2^-916, are scaled by a
// power of two first, as MKL does; 0, -0 and +inf come back unchanged and negative inputs give
// MKL's NaN (+qNaN, where the CPU's square root gives -qNaN). Checked against MKL on all 2^32
// float32 bit patterns, NaNs included, and 84 million float64 values; tests/test_torch_sqrt.py
// checks samples of both.
template <typename Vec>
struct MklSqrtParts {
  Vec root, half_estimate;
};

RMSPROP_EXT_INLINE_ALWAYS MklSqrtParts<__m512> mkl_sqrt_parts(__m512 x, __m512 estimate) {
  return {_mm512_mul_ps(x, estimate), _mm512_mul_ps(estimate, _mm512_set1_ps(0.5f))};
}

RMSPROP_EXT_INLINE_ALWAYS MklSqrtParts<__m512d> mkl_sqrt_parts(__m512d x, __m512d estimate) {
  const __m512d half = _mm512_set1_pd(0.5);
  const __m512d root = _mm512_mul_pd(x, estimate);
  const __m512d half_estimate = _mm512_mul_pd(estimate, half);
  const __m512d error = _mm512_fnmadd_pd(root, half_estimate, half);
  return {_mm512_fmadd_pd(root, error, root), _mm512_fmadd_pd(half_estimate, error, half_estimate)};
}

// The estimates are written zero-masked with every lane set (the same instruction and bits):
// GCC 12 warns about the plain intrinsics' undefined pass-through operand.
// The scaling and the special values (compiled by the avx512 kernel alone, and left out of line:
// rare): MKL's code for all lanes of a vector holding any radicand
// outside [2^-77 (float32) or 2^-915 (float64), +inf), NaN included; on the others it gives
// exactly what the short path gives, so which vectors take it never changes a result.
inline __m512 mkl_sqrt_rare(__m512 x) {
  const __m512 estimate = _mm512_maskz_rsqrt14_ps(0xFFFF, x);
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
  const __m512d estimate = _mm512_maskz_rsqrt14_pd(0xFF, x);
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

RMSPROP_EXT_INLINE_ALWAYS __m512 mkl_avx512_sqrt(__m512 x) {
  const __mmask16 ordinary =
      _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(x, _mm512_set1_ps(0x1p-77f), _CMP_GE_OQ), x,
                              _mm512_set1_ps(INFINITY), _CMP_LT_OQ);
  if (__builtin_expect(ordinary != 0xFFFF, 0)) {
    return mkl_sqrt_rare(x);
  }
  const auto [root, half_estimate] = mkl_sqrt_parts(x, _mm512_maskz_rsqrt14_ps(0xFFFF, x));
  return _mm512_fmadd_ps(_mm512_fnmadd_ps(root, root, x), half_estimate, root);
}

RMSPROP_EXT_INLINE_ALWAYS __m512d mkl_avx512_sqrt(__m512d x) {
  const __mmask8 ordinary =
      _mm512_mask_cmp_pd_mask(_mm512_cmp_pd_mask(x, _mm512_set1_pd(0x1p-915), _CMP_GE_OQ), x,
                              _mm512_set1_pd(INFINITY), _CMP_LT_OQ);
  if (__builtin_expect(ordinary != 0xFF, 0)) {
    return mkl_sqrt_rare(x);
  }
  const auto [root, half_estimate] = mkl_sqrt_parts(x, _mm512_maskz_rsqrt14_pd(0xFF, x));
  return _mm512_fmadd_pd(_mm512_fnmadd_pd(root, root, x), half_estimate, root);
}

// 16 float32 or 8 float64 lanes: the AVX2-class paths, each lane rounding as in mkl_sqrt_avx2.
// float32 takes only the estimate on the two 8-lane halves (vrsqrtps has no 16-lane form with its
// bits) and the steps after it on all 16 lanes at once: on an AMD EPYC (Zen 4), where MKL takes
// its SSE4.2 path, the step is bound by these multiplies, and one 16-lane instruction in place of
// two 8-lane ones took the in-cache step from 0.41 to 0.38 ns per element on one thread.
// float64 runs the 4-lane function on each half.
template <SquareRoot kForm>
RMSPROP_EXT_INLINE_ALWAYS __m512 mkl_estimate(__m512 x) {
  if constexpr (kForm == SquareRoot::kMklPortable) {
    const __m512 reciprocal = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_sqrt_ps(x));
    return _mm512_and_ps(reciprocal, _mm512_castsi512_ps(_mm512_set1_epi32(-2048)));
  } else {
    // Extracts and inserts rather than casts, whose undefined upper lanes GCC 12 warns about.
    const __m256 low = _mm256_rsqrt_ps(_mm512_extractf32x8_ps(x, 0));
    const __m256 high = _mm256_rsqrt_ps(_mm512_extractf32x8_ps(x, 1));
    return _mm512_insertf32x8(_mm512_insertf32x8(_mm512_setzero_ps(), low, 0), high, 1);
  }
}

template <SquareRoot kForm>
RMSPROP_EXT_INLINE_ALWAYS bool mkl_all_ordinary(__m512 x) {
  const __m512i shifted = _mm512_add_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(0x7F800000));
  return _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(kMklOrdinaryLimit<kForm> + 1), shifted) ==
         0xFFFF;
}

template <SquareRoot kForm>
RMSPROP_EXT_INLINE_ALWAYS __m512 mkl_sqrt_avx512(__m512 x) {
  if constexpr (kForm == SquareRoot::kMklAvx512) {
    return mkl_avx512_sqrt(x);
  } else {
    const __m512 result = mkl_refined_root<kForm>(x, mkl_estimate<kForm>(x));
    if (__builtin_expect(mkl_all_ordinary<kForm>(x), 1)) {
      return result;
    }
    // MKL's special lanes: the 8-lane function, which takes them apart.
    const __m256 low = mkl_sqrt_avx2<kForm>(_mm512_extractf32x8_ps(x, 0));
    const __m256 high = mkl_sqrt_avx2<kForm>(_mm512_extractf32x8_ps(x, 1));
    return _mm512_insertf32x8(_mm512_insertf32x8(_mm512_setzero_ps(), low, 0), high, 1);
  }
}

template <SquareRoot kForm>
RMSPROP_EXT_INLINE_ALWAYS __m512d mkl_sqrt_avx512(__m512d x) {
  if constexpr (kForm == SquareRoot::kMklAvx512) {
    return mkl_avx512_sqrt(x);
  } else {
    // Through float32 views: AVX-512F's float64 extract and insert give GCC 12 the same warning
    // as the casts (undefined lanes), AVX-512DQ's float32 ones do not.
    const __m512 lanes = _mm512_castpd_ps(x);
    const __m256d low = mkl_sqrt_avx2<kForm>(_mm256_castps_pd(_mm512_extractf32x8_ps(lanes, 0)));
    const __m256d high = mkl_sqrt_avx2<kForm>(_mm256_castps_pd(_mm512_extractf32x8_ps(lanes, 1)));
    return _mm512_castps_pd(
        _mm512_insertf32x8(_mm512_insertf32x8(_mm512_setzero_ps(), _mm256_castpd_ps(low), 0),
                           _mm256_castpd_ps(high), 1));
  }
}
#endif

}  // namespace rmsprop_ext

#undef RMSPROP_EXT_INLINE_ALWAYS
