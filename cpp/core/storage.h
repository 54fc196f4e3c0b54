// The 16-bit storage formats and the counter-based generator of stochastic rounding: plain C++,
// one value at a time. simd_ops.h gives each instruction set's vectors the same conversions; these
// are the portable ones, and define the results the vector ones must equal bit for bit.
#pragma once

#include <cstdint>
#include <cstring>

namespace rmsprop_ext {

// bfloat16 and IEEE binary16 values as their bit patterns: distinct types, so that a buffer's
// format is part of its pointer type and a load or store picks its conversion by overload.
struct bfloat16 {
  std::uint16_t bits;
};
struct float16 {
  std::uint16_t bits;
};

inline std::uint32_t bits_of(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

inline float float_of(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

inline float to_float(bfloat16 value) { return float_of(std::uint32_t{value.bits} << 16); }

// Round to nearest, ties to even, as torch converts; every NaN becomes torch's 0x7fc0. Done with
// integer arithmetic rather than AVX512-BF16's vcvtneps2bf16, which treats subnormal inputs as
// zero: results must not depend on the CPU.
inline std::uint32_t bfloat16_bits_nearest(std::uint32_t bits) {
  return (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
}

inline bfloat16 to_bfloat16(float value) {
  if (value != value) {
    return {0x7fc0};
  }
  return {static_cast<std::uint16_t>(bfloat16_bits_nearest(bits_of(value)))};
}

// As F16C's vcvtph2ps: exact, signalling NaNs quieted.
inline float to_float(float16 value) {
  const std::uint32_t sign = std::uint32_t{value.bits & 0x8000u} << 16;
  const std::uint32_t exponent = (value.bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = value.bits & 0x3ffu;
  if (exponent == 0x1f) {
    return float_of(sign | 0x7f800000u | (mantissa << 13) | (mantissa != 0 ? 0x400000u : 0u));
  }
  if (exponent == 0) {
    // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return float_of(sign | bits_of(magnitude));
  }
  return float_of(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// As F16C's vcvtps2ph with round to nearest even: overflow to infinity, subnormals rounded
// correctly, NaNs quieted keeping the top of their payload.
inline float16 to_float16(float value) {
  const std::uint32_t bits = bits_of(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) {
    return {static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu))};
  }
  if (magnitude >= 0x47800000u) {  // 2^16 and above, infinity included
    return {static_cast<std::uint16_t>(sign | 0x7c00u)};
  }
  if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal or zero result
    // Adding 0.5 puts the result's ulp (2^-24) at the last mantissa bit of the sum, so the
    // CPU's own round-to-nearest-even does the rounding.
    const float sum = float_of(magnitude) + 0.5f;
    return {static_cast<std::uint16_t>(sign | (bits_of(sum) - bits_of(0.5f)))};
  }
  const std::uint32_t odd = (magnitude >> 13) & 1u;
  magnitude += 0xc8000fffu + odd;  // exponent rebias (-112 << 23) and the rounding bias
  return {static_cast<std::uint16_t>(sign | (magnitude >> 13))};
}

// The counter-based generator of stochastic rounding: 32 random bits that depend only on a key
// (from the seed, the parameter's stream, the step, the high half of the element index and what
// the bits round) and the low half of the element index, so a result never depends on threads,
// blocks or the instruction set. One round of a well-mixing 32-bit integer hash (Wellons'
// "lowbias32") of the index XOR the key: a keyed counter through one such round dithers a rounding
// as well as through two, and the second round's two 32-bit multiplies (two operations each on
// Intel's vector units) made stochastic rounding the slowest part of its steps (one round: 1.4x
// faster bf16 and fp16 stochastic steps in cache; docs/storage_speed.md).
inline std::uint32_t hash32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

inline std::uint64_t mix64(std::uint64_t x) {  // SplitMix64's finalizer
  x += 0x9e3779b97f4a7c15u;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

struct RandomKey {
  std::uint32_t value;
};

inline RandomKey random_key(std::uint64_t seed, std::uint64_t stream, std::uint64_t step,
                            std::uint64_t index_high) {
  const std::uint64_t key = mix64(mix64(mix64(mix64(seed) ^ stream) ^ step) ^ index_high);
  return {static_cast<std::uint32_t>(key)};
}

inline std::uint32_t random_bits(RandomKey key, std::uint32_t index_low) {
  return hash32(index_low ^ key.value);
}

// Stochastic rounding to bfloat16: up (in magnitude) with probability equal to the discarded
// fraction of an ulp, using the top 16 of the 32 random bits; NaN as in to_bfloat16.
inline bfloat16 to_bfloat16_stochastic(float value, std::uint32_t random) {
  if (value != value) {
    return {0x7fc0};
  }
  return {static_cast<std::uint16_t>((bits_of(value) + (random >> 16)) >> 16)};
}

// Stochastic rounding to float16. float16's spacing changes with the exponent and stays 2^-24
// below 2^-14 (its subnormals), so the kept part and the discarded fraction (as a 32-bit fraction
// of that spacing) are cut by integer shifts; the result moves one step away from zero when the
// fraction and the 32 random bits sum to 2^32 or more. Magnitudes from the largest float16
// (65504) up, infinities and NaNs round to nearest, as to_float16 does.
inline float16 to_float16_stochastic(float value, std::uint32_t random) {
  const std::uint32_t bits = bits_of(value);
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x477fe000u) {
    return to_float16(value);
  }
  std::uint32_t kept;
  std::uint32_t fraction;
  if (magnitude >= 0x38800000u) {  // a normal float16: 13 of float32's 23 mantissa bits go
    kept = (magnitude >> 13) - (112u << 10);
    fraction = magnitude << 19;
  } else {  // a subnormal float16 (or zero): whole multiples of 2^-24
    const std::uint32_t exponent = magnitude >> 23;
    const std::uint32_t significand = (magnitude & 0x7fffffu) | (exponent != 0 ? 0x800000u : 0u);
    const std::uint32_t shift = 126u - (exponent != 0 ? exponent : 1u);  // 14 to 125
    kept = shift < 32 ? significand >> shift : 0u;
    if (shift <= 32) {
      fraction = significand << (32 - shift);
    } else {
      fraction = shift < 64 ? significand >> (shift - 32) : 0u;
    }
  }
  const std::uint32_t up = random > ~fraction ? 1u : 0u;
  return {static_cast<std::uint16_t>(((bits >> 16) & 0x8000u) | (kept + up))};
}

}  // namespace rmsprop_ext
