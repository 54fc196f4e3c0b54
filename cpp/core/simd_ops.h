// Thin wrappers that give scalars and each instruction set's vectors the same small vocabulary,
// so update_math.h can state the arithmetic once for all of them.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "mkl_sqrt.h"
#include "storage.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif

namespace rmsprop_ext {

// a * b + c rounded once, like the vector FMA instructions. Where the file is compiled with FMA
// (the avx2 and avx512 kernels, every aarch64 build) std::fma is that one instruction. Elsewhere
// (the scalar kernel on x86-64) std::fma is a libm call per element, which also keeps the compiler
// from vectorizing the loop around it; float has an exact way without it. The product of two
// floats is exact in double; the double sum is rounded to odd (kept if exact, else the neighbour
// of the exact sum whose last bit is 1), and a value rounded to odd with two or more bits beyond
// float's rounds to the same float as the exact sum (Boldo and Melquiond, "Emulation of FMA and
// correctly rounded sums: proved algorithms using rounding to odd", IEEE Trans. Computers, 2008).
// Every operation here is exact or IEEE-rounded, so the result is std::fma's, bit for bit.
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
inline constexpr bool kFmaInstruction = true;
#else
inline constexpr bool kFmaInstruction = false;
#endif

inline float fused_multiply_add(float a, float b, float c) {
  if constexpr (kFmaInstruction) {
    return std::fma(a, b, c);
  }
  const double product = static_cast<double>(a) * static_cast<double>(b);
  const double addend = c;
  const double sum = product + addend;
  // The sum's rounding error, exactly (Knuth's two-sum); NaN when an input is infinite or NaN.
  const double addend_part = sum - product;
  const double error = (product - (sum - addend_part)) + (addend - addend_part);
  // Integer operations on the bit patterns only (no comparisons), so that the compiler can
  // vectorize the loop with SSE2. Inexact: the error is neither zero nor NaN. Then the sum is
  // truncated (one step toward zero when it was rounded away from zero, i.e. when the error has
  // the other sign) and its last bit set. A nonzero exact sum of these operands is at least
  // 2^-298 in magnitude, so an inexact sum is never zero.
  std::uint64_t sum_bits, error_bits;
  std::memcpy(&sum_bits, &sum, sizeof sum_bits);
  std::memcpy(&error_bits, &error, sizeof error_bits);
  const std::uint64_t magnitude = error_bits & 0x7fffffffffffffffu;
  const std::uint64_t nonzero = (0 - magnitude) >> 63;
  const std::uint64_t nan = (0x7ff0000000000000u - magnitude) >> 63;
  const std::uint64_t inexact = nonzero & ~nan;
  const std::uint64_t rounded_away = ((error_bits ^ sum_bits) >> 63) & inexact;
  sum_bits = (sum_bits - rounded_away) | inexact;
  double odd;
  std::memcpy(&odd, &sum_bits, sizeof odd);
  return static_cast<float>(odd);
}

inline double fused_multiply_add(double a, double b, double c) { return std::fma(a, b, c); }

// One lane; mul_add is fused_multiply_add.
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
  static Vec mul_add(Vec a, Vec b, Vec c) { return fused_multiply_add(a, b, c); }
  // c - a * b, rounded once
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return fused_multiply_add(-a, b, c); }

  // 16-bit storage (T is float): converted on load, rounded to nearest even on store.
  static Vec load(const bfloat16* p) { return to_float(*p); }
  static Vec load(const float16* p) { return to_float(*p); }
  static void store(bfloat16* p, Vec v) { *p = to_bfloat16(v); }
  static void store(float16* p, Vec v) { *p = to_float16(v); }
  // Stores v and returns the value the buffer now holds (v itself for a buffer of T).
  static Vec store_rounded(T* p, Vec v) {
    *p = v;
    return v;
  }
  static Vec store_rounded(bfloat16* p, Vec v) {
    *p = to_bfloat16(v);
    return to_float(*p);
  }
  static Vec store_rounded(float16* p, Vec v) {
    *p = to_float16(v);
    return to_float(*p);
  }
  // v rounded to the type the pointer points to, as store_rounded would store it (the pointer
  // only picks the type).
  static Vec rounded(const bfloat16*, Vec v) { return to_float(to_bfloat16(v)); }
  static Vec rounded(const float16*, Vec v) { return to_float(to_float16(v)); }
  using Bits = std::uint32_t;
  // The generator's bits for the lane with element index `index` (its low 32 bits).
  static Bits random_bits(RandomKey key, std::uint32_t index) {
    return rmsprop_ext::random_bits(key, index);
  }
  static void store_stochastic(bfloat16* p, Vec v, Bits random) {
    *p = to_bfloat16_stochastic(v, random);
  }
  static void store_stochastic(float16* p, Vec v, Bits random) {
    *p = to_float16_stochastic(v, random);
  }
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
  template <SquareRoot kForm>
  __attribute__((always_inline)) static Vec mkl_sqrt(Vec a) {
    return mkl_sqrt_avx2<kForm>(a);
  }
  static Vec store_rounded(float* p, Vec v) {
    store(p, v);
    return v;
  }
  static Vec max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return _mm256_fnmadd_ps(a, b, c); }

  // 16-bit storage, bit for bit as ScalarOps: bfloat16 by integer arithmetic, float16 by F16C.
  static Vec load(const bfloat16* p) {
    const __m128i halves = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16));
  }
  static Vec load(const float16* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static void store(bfloat16* p, Vec v) { store_high_halves(p, bfloat16_sum_or_nan(v)); }
  static void store(float16* p, Vec v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static Vec store_rounded(bfloat16* p, Vec v) {
    const __m256i sum = bfloat16_sum_or_nan(v);
    store_high_halves(p, sum);
    return _mm256_castsi256_ps(
        _mm256_and_si256(sum, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static Vec store_rounded(float16* p, Vec v) {
    const __m128i halves = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), halves);
    return _mm256_cvtph_ps(halves);
  }
  // A value rounded to bfloat16 and back, which torch's 16-bit arithmetic does after every
  // operation: the rounding bias added and the low half cleared in place (no shifts down and up).
  // No NaN case is needed, and none is paid for (two of the seven operations): every NaN that
  // torch's bfloat16 arithmetic meets has a zero low half. Its buffers hold bfloat16 (the high
  // half of a float32), an operation on a NaN returns that NaN quieted (bit 22, in the high half)
  // and an invalid one the default NaN 0xffc00000; and to a zero low half the bias adds at most
  // 0x8000, which never carries into the high half, so such a NaN rounds to itself. Which NaN it
  // is does not matter, since every store writes torch's. (tests/test_torch_bitwise.py sends NaNs
  // of every payload through these roundings.)
  static Vec rounded(const bfloat16*, Vec v) {
    return _mm256_castsi256_ps(_mm256_and_si256(bfloat16_rounding_sum(v),
                                                _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static Vec rounded(const float16*, Vec v) {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  using Bits = __m256i;
  static Bits random_bits(RandomKey key, std::uint32_t index) {
    const __m256i lanes = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(index)),
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return hash(_mm256_xor_si256(lanes, _mm256_set1_epi32(static_cast<int>(key.value))));
  }
  static void store_stochastic(bfloat16* p, Vec v, Bits random) {
    const __m256i sum = _mm256_add_epi32(_mm256_castps_si256(v), _mm256_srli_epi32(random, 16));
    store_high_halves(p, high_halves_with_nan(v, sum));
  }
  // As to_float16_stochastic: vectors of float16 normals (nearly all) take its first case alone,
  // the others both cases blended.
  static void store_stochastic(float16* p, Vec v, Bits random) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff));
    const __m256i outside =
        _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x38800000), magnitude),
                        at_least(magnitude, 0x477fe000));
    if (__builtin_expect(!_mm256_testz_si256(outside, outside), 0)) {
      store_float16_stochastic_any(p, v, random);
      return;
    }
    const __m256i kept =
        _mm256_sub_epi32(_mm256_srli_epi32(magnitude, 13), _mm256_set1_epi32(112 << 10));
    store_halves(
        p, _mm256_or_si256(
               _mm256_sub_epi32(kept, float16_carry(_mm256_slli_epi32(magnitude, 19), random)),
               _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x8000))));
  }

 private:
  // -1 in the lanes where the random bits carry the discarded fraction over 2^32: random >
  // ~fraction, unsigned, as a signed comparison with both sign bits flipped.
  static __m256i float16_carry(__m256i fraction, __m256i random) {
    const __m256i flip = _mm256_set1_epi32(static_cast<int>(0x80000000u));
    return _mm256_cmpgt_epi32(_mm256_xor_si256(random, flip),
                              _mm256_xor_si256(fraction, _mm256_set1_epi32(0x7fffffff)));
  }
  // Every case of to_float16_stochastic computed and blended; shift counts of 32 or more give 0
  // in vpsllvd/vpsrlvd, which is what its guards spell out.
  static void store_float16_stochastic_any(float16* p, Vec v, Bits random) {
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff));
    const __m256i exponent = _mm256_srli_epi32(magnitude, 23);
    const __m256i significand =
        _mm256_or_si256(_mm256_and_si256(magnitude, _mm256_set1_epi32(0x7fffff)),
                        _mm256_slli_epi32(_mm256_min_epu32(exponent, one), 23));
    const __m256i shift = _mm256_sub_epi32(_mm256_set1_epi32(126), _mm256_max_epu32(exponent, one));
    const __m256i normal = at_least(magnitude, 0x38800000);
    const __m256i kept = _mm256_blendv_epi8(
        _mm256_srlv_epi32(significand, shift),
        _mm256_sub_epi32(_mm256_srli_epi32(magnitude, 13), _mm256_set1_epi32(112 << 10)), normal);
    const __m256i fraction = _mm256_blendv_epi8(
        _mm256_or_si256(
            _mm256_sllv_epi32(significand, _mm256_sub_epi32(_mm256_set1_epi32(32), shift)),
            _mm256_srlv_epi32(significand, _mm256_sub_epi32(shift, _mm256_set1_epi32(32)))),
        _mm256_slli_epi32(magnitude, 19), normal);
    const __m256i rounded =
        _mm256_or_si256(_mm256_sub_epi32(kept, float16_carry(fraction, random)),
                        _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x8000)));
    const __m256i nearest = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    store_halves(p, _mm256_blendv_epi8(rounded, nearest, at_least(magnitude, 0x477fe000)));
  }
  static __m256i hash(__m256i x) {
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846ca68bu)));
    return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  }
  // v's bits plus the bias that rounds them to nearest-even bfloat16 in the high half (for a
  // non-NaN v).
  static __m256i bfloat16_rounding_sum(Vec v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    // The bias added to v first, beside the parity: one operation less on the dependency chain.
    return _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), odd);
  }
  // The rounding sum with torch's NaN in the high half of NaN lanes: the high halves are the
  // bfloat16 patterns to store.
  static __m256i bfloat16_sum_or_nan(Vec v) {
    return high_halves_with_nan(v, bfloat16_rounding_sum(v));
  }
  // `lanes` with torch's NaN pattern in the high half where v is NaN.
  static __m256i high_halves_with_nan(Vec v, __m256i lanes) {
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(lanes, _mm256_set1_epi32(0x7fc00000), nan);
  }
  // Stores the high halves of the 8 lanes: one byte shuffle gathers them into the low 8 bytes of
  // each 128-bit half, one permutation puts those side by side (where a shift, an extract and a
  // pack took three operations).
  static void store_high_halves(void* p, __m256i lanes) {
    const __m256i gather =
        _mm256_setr_epi8(2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, 2, 3, 6, 7, 10,
                         11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(lanes, gather), 0x08);
    _mm_storeu_si128(static_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
  }
  // All ones in the lanes whose value (below 2^31) is at least `bound`.
  static __m256i at_least(__m256i value, int bound) {
    return _mm256_cmpgt_epi32(value, _mm256_set1_epi32(bound - 1));
  }
  // Stores the low halves of the 8 lanes (each below 2^16, so unsigned saturation keeps them).
  static void store_halves(void* p, __m256i lanes) {
    _mm_storeu_si128(
        static_cast<__m128i*>(p),
        _mm_packus_epi32(_mm256_castsi256_si128(lanes), _mm256_extracti128_si256(lanes, 1)));
  }
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
  template <SquareRoot kForm>
  __attribute__((always_inline)) static Vec mkl_sqrt(Vec a) {
    return mkl_sqrt_avx2<kForm>(a);
  }
  static Vec store_rounded(double* p, Vec v) {
    store(p, v);
    return v;
  }
  static Vec max(Vec a, Vec b) { return _mm256_max_pd(a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return _mm256_fmadd_pd(a, b, c); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return _mm256_fnmadd_pd(a, b, c); }
};
#endif

#if defined(__aarch64__) && defined(__ARM_NEON)
// NEON (AdvSIMD), baseline on every aarch64 CPU. Its add, multiply, divide, square root and fused
// multiply-add are IEEE operations rounded like ScalarOps' (aarch64 Linux keeps subnormals), so
// the vector body and the scalar tail agree bit for bit.
template <typename T>
struct NeonOps;

template <>
struct NeonOps<float> {
  using Scalar = float;
  using Vec = float32x4_t;
  static constexpr int kWidth = 4;
  static Vec load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, Vec v) { vst1q_f32(p, v); }
  static Vec broadcast(float v) { return vdupq_n_f32(v); }
  static Vec add(Vec a, Vec b) { return vaddq_f32(a, b); }
  static Vec sub(Vec a, Vec b) { return vsubq_f32(a, b); }
  static Vec mul(Vec a, Vec b) { return vmulq_f32(a, b); }
  static Vec div(Vec a, Vec b) { return vdivq_f32(a, b); }
  static Vec sqrt(Vec a) { return vsqrtq_f32(a); }
  static Vec store_rounded(float* p, Vec v) {
    store(p, v);
    return v;
  }
  // As ScalarOps::max (a > b ? a : b), not vmaxq's NaN propagation.
  static Vec max(Vec a, Vec b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return vfmaq_f32(c, a, b); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return vfmsq_f32(c, a, b); }

  // 16-bit storage, bit for bit as ScalarOps: bfloat16 by integer arithmetic, float16 by the
  // FCVT conversions (round to nearest even, NaNs quieted keeping the top of their payload).
  static Vec load(const bfloat16* p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(&p->bits), 16));
  }
  static Vec load(const float16* p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(&p->bits)));
  }
  static void store(bfloat16* p, Vec v) { vst1_u16(&p->bits, vmovn_u32(bfloat16_bits(v))); }
  static void store(float16* p, Vec v) {
    vst1_u16(&p->bits, vreinterpret_u16_f16(vcvt_f16_f32(v)));
  }
  static Vec store_rounded(bfloat16* p, Vec v) {
    const uint32x4_t bits = bfloat16_bits(v);
    vst1_u16(&p->bits, vmovn_u32(bits));
    return vreinterpretq_f32_u32(vshlq_n_u32(bits, 16));
  }
  static Vec store_rounded(float16* p, Vec v) {
    const float16x4_t halves = vcvt_f16_f32(v);
    vst1_u16(&p->bits, vreinterpret_u16_f16(halves));
    return vcvt_f32_f16(halves);
  }
  // No NaN case, as Avx2Ops<float>::rounded explains: the bias added, the low half cleared.
  static Vec rounded(const bfloat16*, Vec v) {
    return vreinterpretq_f32_u32(vandq_u32(bfloat16_rounding_sum(v), vdupq_n_u32(0xffff0000u)));
  }
  static Vec rounded(const float16*, Vec v) { return vcvt_f32_f16(vcvt_f16_f32(v)); }
  using Bits = uint32x4_t;
  static Bits random_bits(RandomKey key, std::uint32_t index) {
    static const std::uint32_t kLanes[4] = {0, 1, 2, 3};
    const uint32x4_t lanes = vaddq_u32(vdupq_n_u32(index), vld1q_u32(kLanes));
    return hash(veorq_u32(lanes, vdupq_n_u32(key.value)));
  }
  static void store_stochastic(bfloat16* p, Vec v, Bits random) {
    const uint32x4_t sum = vaddq_u32(vreinterpretq_u32_f32(v), vshrq_n_u32(random, 16));
    vst1_u16(&p->bits, vmovn_u32(nan_to_bfloat16(v, vshrq_n_u32(sum, 16))));
  }
  // float16 stochastic rounding lane by lane, through the scalar code (its case analysis per lane
  // is what the x86 kernels vectorize; the results are the same bits).
  static void store_stochastic(float16* p, Vec v, Bits random) {
    float values[4];
    std::uint32_t bits[4];
    vst1q_f32(values, v);
    vst1q_u32(bits, random);
    for (int lane = 0; lane < 4; ++lane) {
      p[lane] = to_float16_stochastic(values[lane], bits[lane]);
    }
  }

 private:
  static uint32x4_t hash(uint32x4_t x) {
    x = veorq_u32(x, vshrq_n_u32(x, 16));
    x = vmulq_u32(x, vdupq_n_u32(0x7feb352du));
    x = veorq_u32(x, vshrq_n_u32(x, 15));
    x = vmulq_u32(x, vdupq_n_u32(0x846ca68bu));
    return veorq_u32(x, vshrq_n_u32(x, 16));
  }
  // bfloat16 patterns in the low halves of the lanes, NaN lanes replaced by torch's NaN.
  static uint32x4_t nan_to_bfloat16(Vec v, uint32x4_t patterns) {
    const uint32x4_t ordered = vceqq_f32(v, v);
    return vbslq_u32(ordered, patterns, vdupq_n_u32(0x7fc0));
  }
  // v's bits plus the bias that rounds them to nearest-even bfloat16 in the high half (for a
  // non-NaN v).
  static uint32x4_t bfloat16_rounding_sum(Vec v) {
    const uint32x4_t bits = vreinterpretq_u32_f32(v);
    const uint32x4_t odd = vandq_u32(vshrq_n_u32(bits, 16), vdupq_n_u32(1));
    return vaddq_u32(vaddq_u32(bits, vdupq_n_u32(0x7fff)), odd);
  }
  static uint32x4_t bfloat16_bits(Vec v) {
    return nan_to_bfloat16(v, vshrq_n_u32(bfloat16_rounding_sum(v), 16));
  }
};

template <>
struct NeonOps<double> {
  using Scalar = double;
  using Vec = float64x2_t;
  static constexpr int kWidth = 2;
  static Vec load(const double* p) { return vld1q_f64(p); }
  static void store(double* p, Vec v) { vst1q_f64(p, v); }
  static Vec broadcast(double v) { return vdupq_n_f64(v); }
  static Vec add(Vec a, Vec b) { return vaddq_f64(a, b); }
  static Vec sub(Vec a, Vec b) { return vsubq_f64(a, b); }
  static Vec mul(Vec a, Vec b) { return vmulq_f64(a, b); }
  static Vec div(Vec a, Vec b) { return vdivq_f64(a, b); }
  static Vec sqrt(Vec a) { return vsqrtq_f64(a); }
  static Vec store_rounded(double* p, Vec v) {
    store(p, v);
    return v;
  }
  static Vec max(Vec a, Vec b) { return vbslq_f64(vcgtq_f64(a, b), a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return vfmaq_f64(c, a, b); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return vfmsq_f64(c, a, b); }
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
  static Vec store_rounded(float* p, Vec v) {
    store(p, v);
    return v;
  }
  template <SquareRoot kForm>
  __attribute__((always_inline)) static Vec mkl_sqrt(Vec a) {
    return mkl_sqrt_avx512<kForm>(a);
  }
  static Vec max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return _mm512_fnmadd_ps(a, b, c); }

  // 16-bit storage, bit for bit as ScalarOps: bfloat16 by integer arithmetic, float16 by the
  // AVX-512 forms of F16C's conversions.
  static Vec load(const bfloat16* p) {
    const __m256i halves = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
  }
  static Vec load(const float16* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static void store(bfloat16* p, Vec v) { store_halves(p, bfloat16_bits(v)); }
  static void store(float16* p, Vec v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static Vec store_rounded(bfloat16* p, Vec v) {
    const __m512i bits = bfloat16_bits(v);
    store_halves(p, bits);
    return _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
  }
  static Vec store_rounded(float16* p, Vec v) {
    const __m256i halves = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), halves);
    return _mm512_cvtph_ps(halves);
  }
  // No NaN case, as Avx2Ops<float>::rounded explains: the bias added, the low half cleared.
  static Vec rounded(const bfloat16*, Vec v) {
    return _mm512_castsi512_ps(_mm512_and_si512(bfloat16_rounding_sum(v),
                                                _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static Vec rounded(const float16*, Vec v) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  using Bits = __m512i;
  static Bits random_bits(RandomKey key, std::uint32_t index) {
    const __m512i lanes =
        _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(index)),
                         _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    return hash(_mm512_xor_si512(lanes, _mm512_set1_epi32(static_cast<int>(key.value))));
  }
  static void store_stochastic(bfloat16* p, Vec v, Bits random) {
    const __m512i sum = _mm512_add_epi32(_mm512_castps_si512(v), _mm512_srli_epi32(random, 16));
    store_halves(p, nan_to_bfloat16(v, _mm512_srli_epi32(sum, 16)));
  }
  // As to_float16_stochastic: vectors of float16 normals (nearly all) take its first case alone,
  // the others both cases blended.
  static void store_stochastic(float16* p, Vec v, Bits random) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 normal = _mm512_cmpge_epu32_mask(magnitude, _mm512_set1_epi32(0x38800000)) &
                             _mm512_cmplt_epu32_mask(magnitude, _mm512_set1_epi32(0x477fe000));
    if (__builtin_expect(normal != 0xFFFF, 0)) {
      store_float16_stochastic_any(p, v, random);
      return;
    }
    const __m512i kept =
        _mm512_sub_epi32(_mm512_srli_epi32(magnitude, 13), _mm512_set1_epi32(112 << 10));
    const __mmask16 up = _mm512_cmpgt_epu32_mask(
        random, _mm512_xor_si512(_mm512_slli_epi32(magnitude, 19), _mm512_set1_epi32(-1)));
    store_halves(p, _mm512_or_si512(
                        _mm512_mask_add_epi32(kept, up, kept, _mm512_set1_epi32(1)),
                        _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x8000))));
  }

 protected:
  // Every case of to_float16_stochastic computed and blended; shift counts of 32 or more give 0
  // in vpsllvd/vpsrlvd, which is what its guards spell out.
  static void store_float16_stochastic_any(float16* p, Vec v, Bits random) {
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff));
    const __m512i exponent = _mm512_srli_epi32(magnitude, 23);
    const __m512i significand =
        _mm512_or_si512(_mm512_and_si512(magnitude, _mm512_set1_epi32(0x7fffff)),
                        _mm512_slli_epi32(_mm512_min_epu32(exponent, one), 23));
    const __m512i shift = _mm512_sub_epi32(_mm512_set1_epi32(126), _mm512_max_epu32(exponent, one));
    const __mmask16 normal = _mm512_cmpge_epu32_mask(magnitude, _mm512_set1_epi32(0x38800000));
    const __m512i kept = _mm512_mask_blend_epi32(
        normal, _mm512_srlv_epi32(significand, shift),
        _mm512_sub_epi32(_mm512_srli_epi32(magnitude, 13), _mm512_set1_epi32(112 << 10)));
    const __m512i fraction = _mm512_mask_blend_epi32(
        normal,
        _mm512_or_si512(
            _mm512_sllv_epi32(significand, _mm512_sub_epi32(_mm512_set1_epi32(32), shift)),
            _mm512_srlv_epi32(significand, _mm512_sub_epi32(shift, _mm512_set1_epi32(32)))),
        _mm512_slli_epi32(magnitude, 19));
    const __mmask16 up =
        _mm512_cmpgt_epu32_mask(random, _mm512_xor_si512(fraction, _mm512_set1_epi32(-1)));
    const __m512i rounded =
        _mm512_or_si512(_mm512_mask_add_epi32(kept, up, kept, one),
                        _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x8000)));
    const __m512i nearest =
        _mm512_cvtepu16_epi32(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    store_halves(p, _mm512_mask_blend_epi32(
                        _mm512_cmpge_epu32_mask(magnitude, _mm512_set1_epi32(0x477fe000)), rounded,
                        nearest));
  }
  static __m512i hash(__m512i x) {
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7feb352d));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(static_cast<int>(0x846ca68bu)));
    return _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
  }
  static __m512i nan_to_bfloat16(Vec v, __m512i patterns) {
    return _mm512_mask_mov_epi32(patterns, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q),
                                 _mm512_set1_epi32(0x7fc0));
  }
  // v's bits plus the bias that rounds them to nearest-even bfloat16 in the high half (for a
  // non-NaN v).
  static __m512i bfloat16_rounding_sum(Vec v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    return _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), odd);
  }
  static __m512i bfloat16_bits(Vec v) {
    return nan_to_bfloat16(v, _mm512_srli_epi32(bfloat16_rounding_sum(v), 16));
  }
  static void store_halves(void* p, __m512i lanes) {
    _mm256_storeu_si256(static_cast<__m256i*>(p), _mm512_cvtepi32_epi16(lanes));
  }
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
  static Vec store_rounded(double* p, Vec v) {
    store(p, v);
    return v;
  }
  template <SquareRoot kForm>
  __attribute__((always_inline)) static Vec mkl_sqrt(Vec a) {
    return mkl_sqrt_avx512<kForm>(a);
  }
  static Vec max(Vec a, Vec b) { return _mm512_max_pd(a, b); }
  static Vec mul_add(Vec a, Vec b, Vec c) { return _mm512_fmadd_pd(a, b, c); }
  static Vec neg_mul_add(Vec a, Vec b, Vec c) { return _mm512_fnmadd_pd(a, b, c); }
};

#if defined(__AVX512BF16__)
// Avx512Ops<float> with AVX512-BF16's vcvtneps2bf16 for the stores to bfloat16: the same bits
// in fewer instructions. Vectors holding a subnormal or a NaN take the integer path, since the
// instruction treats subnormal inputs as zero and keeps NaN payloads. The rounding of torch's
// intermediate results stays Avx512Ops<float>::rounded: with no NaN case and no check, its five
// integer operations beat the conversion there (measured: benchmarks/storage_speed.cpp, torch's
// bf16 step 10-20% faster).
struct Avx512Bf16Ops : Avx512Ops<float> {
  using Avx512Ops<float>::store;
  using Avx512Ops<float>::store_rounded;
  static void store(bfloat16* p, Vec v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), nearest(v));
  }
  static Vec store_rounded(bfloat16* p, Vec v) {
    const __m256i halves = nearest(v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), halves);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
  }

 private:
  static __m256i nearest(Vec v) {
    constexpr int kNanOrSubnormal = 0x01 | 0x20 | 0x80;  // fpclass: QNaN, denormal, SNaN
    if (__builtin_expect(_mm512_fpclass_ps_mask(v, kNanOrSubnormal) != 0, 0)) {
      return _mm512_cvtepi32_epi16(bfloat16_bits(v));
    }
    return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
  }
};
#endif
#endif

}  // namespace rmsprop_ext
