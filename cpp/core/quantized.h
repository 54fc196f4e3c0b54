// The 8-bit block state format ("8bit"): plain C++ loops over one block, which the compiler
// vectorizes for each kernel's instruction set. Only integer operations and exact float
// multiplications by powers of two are used, so every instruction set gives the same bits.
//
// A buffer of n elements is n one-byte codes plus one exponent byte per block of kQuantBlock
// consecutive elements (the last block may be shorter). The block's values are code values times
// 2^E, E the block's exponent, chosen as the smallest E with max |value| < 2^E, so each code only
// needs the range below 1. Codes are tiny floating-point numbers, so the relative precision is
// the same for large and small values of a block:
//   unsigned (square_avg, never negative): 4 exponent bits e, 4 mantissa bits m, code = 16e + m;
//     value 2^(e-15) * (1 + m/16) for e >= 1, 2^-14 * m/16 for e = 0 (a range of 2^18 below 2^E,
//     2^9 in the denominator sqrt(square_avg));
//   signed (momentum_buffer, grad_avg): a sign bit, then 4 exponent bits and 3 mantissa bits;
//     magnitude 2^(e-15) * (1 + m/8) for e >= 1, 2^-14 * m/8 for e = 0.
// square_avg takes the fourth mantissa bit from its exponent: its stochastic rounding error is
// carried from step to step by the running average, and with 3 bits it kept the denominator
// within about 9% of float32's (relative standard deviation), with 4 about 6%.
// An exponent byte of -128 marks a block that held a NaN or an infinity: it reads back as NaN.
// Rounding to a code is to nearest (ties to even) or stochastic, with the generator of storage.h
// (random_bits). The kernel rounds the state stochastically, so that the running averages
// stay unbiased: with alpha = 0.99 one step moves square_avg by about 1%, less than half the
// spacing of its codes (3 to 6.25% of the value), so round to nearest would keep the old value.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "storage.h"

namespace rmsprop_ext {

// One byte of 8-bit state: a distinct type, so the state format is part of the buffer's type.
struct code8 {
  std::uint8_t bits;
};

constexpr std::int64_t kQuantBlock = 32;
constexpr std::int8_t kNonFiniteBlock = std::numeric_limits<std::int8_t>::min();
// Block exponents stay in [-126, 126], where 2^E and 2^-E are normal floats.
constexpr int kMinBlockExponent = -126;
constexpr int kMaxBlockExponent = 126;

// The two code layouts: the exponent bias and the largest magnitude code.
enum class CodeKind { kUnsigned, kSigned };

template <CodeKind kKind>
struct CodeLayout {
  static constexpr std::uint32_t mantissa_bits = kKind == CodeKind::kUnsigned ? 4u : 3u;
  // Bits of a float32 mantissa below the code's.
  static constexpr std::uint32_t dropped_bits = 23u - mantissa_bits;
  static constexpr std::uint32_t bias = 15u;
  static constexpr std::uint32_t max_magnitude = kKind == CodeKind::kUnsigned ? 255u : 127u;
  static constexpr std::uint32_t sign_bit = kKind == CodeKind::kUnsigned ? 0u : 0x80u;
  // Below this magnitude (the smallest normal code) codes are evenly spaced.
  static constexpr float smallest_normal() { return float_of((128u - bias) << 23); }
  // Scales a magnitude below smallest_normal() to 20 fraction bits of a code.
  static constexpr float fixed_point_scale() { return float_of((127u + bias + 22u) << 23); }
  // Scales the magnitude of an even-spaced code to its value.
  static constexpr float subnormal_scale() { return float_of((128u - bias - mantissa_bits) << 23); }
};

// a or b by a condition, as integer operations: both are computed, so the loops over a block have
// no branch (the compiler may not speculate float operations, which can raise exceptions) and
// vectorize.
inline std::uint32_t select(bool condition, std::uint32_t a, std::uint32_t b) {
  const std::uint32_t mask = 0u - static_cast<std::uint32_t>(condition);
  return (a & mask) | (b & ~mask);
}

inline float power_of_two(int exponent) {
  return float_of(static_cast<std::uint32_t>(exponent + 127) << 23);
}

// The exponent byte of a block whose largest magnitude has the bits `largest` (finite).
inline std::int8_t block_exponent(std::uint32_t largest) {
  const int field = static_cast<int>(largest >> 23);
  return static_cast<std::int8_t>(std::clamp(field - 126, kMinBlockExponent, kMaxBlockExponent));
}

// The code of a magnitude already divided by 2^E (so below 2, and usually below 1), rounded up
// when the dropped 20 bits plus `increment` carry: increment 0x7ffff plus the kept last bit
// rounds to nearest even, 20 random bits round stochastically.
template <CodeKind kKind, bool kStochastic>
inline std::uint32_t magnitude_code(float magnitude, std::uint32_t random) {
  using Layout = CodeLayout<kKind>;
  // The code with 20 more fraction bits: the float's own bits rebased to the code's exponent, or
  // for the evenly spaced codes at the bottom, the magnitude in fixed point (clamped first, so the
  // conversion stays in range where the other form is chosen).
  // conversion stays in range where the other form is chosen). The magnitude is finite and not
  // negative, so its bits compare as the float does.
  const std::uint32_t bits = bits_of(magnitude);
  const std::uint32_t smallest_normal = bits_of(Layout::smallest_normal());
  const float bottom = float_of(std::min(bits, smallest_normal)) * Layout::fixed_point_scale();
  const auto fixed_bottom = static_cast<std::uint32_t>(static_cast<std::int32_t>(bottom));
  const std::uint32_t fixed =
      select(bits < smallest_normal, fixed_bottom, bits - ((127u - Layout::bias) << 23));
  constexpr std::uint32_t kDropped = Layout::dropped_bits;
  const std::uint32_t increment = kStochastic
                                      ? (random >> (32u - kDropped))
                                      : ((1u << (kDropped - 1u)) - 1u) + ((fixed >> kDropped) & 1u);
  return std::min((fixed + increment) >> kDropped, Layout::max_magnitude);
}

template <CodeKind kKind>
inline float magnitude_value(std::uint32_t code) {
  using Layout = CodeLayout<kKind>;
  const std::uint32_t exponent = code >> Layout::mantissa_bits;
  const float evenly_spaced =
      static_cast<float>(static_cast<std::int32_t>(code)) * Layout::subnormal_scale();
  const std::uint32_t normal =
      ((exponent + 127u - Layout::bias) << 23) |
      ((code & ((1u << Layout::mantissa_bits) - 1u)) << Layout::dropped_bits);
  return float_of(select(exponent == 0, bits_of(evenly_spaced), normal));
}

// values[0..n) from n codes and their block's exponent byte.
// One loop from the bytes: a widened copy in a local array (as encode_block narrows through one)
// was written by GCC with 256-bit stores and read back with 512-bit loads in the avx512 kernel,
// which stalls each read until the stores retire (a third of the 8-bit step's time).
template <CodeKind kKind>
[[gnu::always_inline]] inline void decode_block(const code8* __restrict codes, std::int8_t exponent,
                                                std::int64_t n, float* __restrict values) {
  using Layout = CodeLayout<kKind>;
  if (exponent == kNonFiniteBlock) {
    std::fill(values, values + n, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  const float scale = power_of_two(exponent);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint32_t code = codes[i].bits;
    const float magnitude = magnitude_value<kKind>(code & Layout::max_magnitude) * scale;
    values[i] = float_of(bits_of(magnitude) | ((code & Layout::sign_bit) << 24));
  }
}

// Codes and the exponent byte of values[0..n), element 0 being element `first` of the buffer:
// rounded to nearest, or stochastically with the random bits of (key, first + i).
template <CodeKind kKind, bool kStochastic>
[[gnu::always_inline]] inline std::int8_t encode_block(const float* values, std::int64_t n,
                                                       code8* codes, RandomKey key,
                                                       std::uint32_t first) {
  using Layout = CodeLayout<kKind>;
  // The largest magnitude, compared as integers: the bits of non-negative floats sort as the
  // floats do, infinities and NaNs above all finite values.
  std::uint32_t largest = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    largest = std::max(largest, bits_of(values[i]) & 0x7fffffffu);
  }
  if (largest >= 0x7f800000u) {
    std::fill(codes, codes + n, code8{0});
    return kNonFiniteBlock;
  }
  const std::int8_t exponent = block_exponent(largest);
  const float inverse_scale = power_of_two(-exponent);
  // Codes computed at the width of a float, then narrowed to bytes: one loop mixing the two
  // widths would be vectorized at the narrow one's, with a quarter of the lanes per instruction.
  alignas(64) std::uint32_t wide[kQuantBlock];
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint32_t bits = bits_of(values[i]);
    const float magnitude = float_of(bits & 0x7fffffffu) * inverse_scale;
    const std::uint32_t random =
        kStochastic ? random_bits(key, first + static_cast<std::uint32_t>(i)) : 0u;
    const std::uint32_t code = magnitude_code<kKind, kStochastic>(magnitude, random);
    // The sign of a signed code; a value rounded to zero keeps its sign, as -0.
    wide[i] = code | ((bits >> 24) & Layout::sign_bit);
  }
  for (std::int64_t i = 0; i < n; ++i) {
    codes[i].bits = static_cast<std::uint8_t>(wide[i]);
  }
  return exponent;
}

}  // namespace rmsprop_ext
