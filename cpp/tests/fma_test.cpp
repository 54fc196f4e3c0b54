// float32's fused multiply-add as the scalar kernel computes it against std::fma, bit for bit
// (NaN against NaN: the payload is not specified). Built with the baseline flags, so on x86-64 it
// checks the emulation by way of double rounded to odd (see simd_ops.h); where FMA is an
// instruction (aarch64) both sides are that instruction. Triples: random bit patterns
// (infinities, NaNs and subnormals included), sums that cancel, sums next to a point halfway
// between two floats (where rounding to double and then to float would round twice), and values
// like an optimizer's. Exit status 0 when none differ.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>

#include "core/simd_ops.h"

using rmsprop_ext::bits_of;
using rmsprop_ext::float_of;

int main() {
  std::mt19937 generator(12345);
  const auto next = [&] { return static_cast<std::uint32_t>(generator()); };
  const auto with_exponent = [&](std::uint32_t bits, std::uint32_t exponent) {
    return float_of((bits & 0x807fffffu) | (exponent << 23));
  };
  constexpr long kTriples = 4000000;
  long failures = 0;
  for (long i = 0; i < kTriples; ++i) {
    const std::uint32_t x = next(), y = next(), z = next();
    float a = float_of(x), b = float_of(y), c = float_of(z);
    switch (i % 4) {
      case 1:  // c within two ulps of -a * b: the sum cancels to its last bits
        c = float_of(bits_of(-a * b) + z % 5u - 2u);
        break;
      case 2:  // 13-bit significands: a product on or next to a point halfway between two floats,
               // plus a c so small that the exact sum rounds in double back to that point
        a = with_exponent((x & 0x80000000u) | (x & 0xfffu) << 11, 100u + (x >> 24) % 50u);
        b = with_exponent((y & 0x80000000u) | (y & 0xfffu) << 11, 100u + (y >> 24) % 50u);
        c = a * b * std::ldexp(z % 2 == 0 ? 1.0f : -1.0f, -54 - static_cast<int>(z % 16u));
        break;
      case 3:  // values like an optimizer's
        a = with_exponent(x, 110u + (x >> 24) % 30u);
        b = with_exponent(y, 110u + (y >> 24) % 30u);
        c = with_exponent(z, 90u + (z >> 24) % 50u);
        break;
      default:
        break;
    }
    const float got = rmsprop_ext::fused_multiply_add(a, b, c);
    const float want = std::fma(a, b, c);
    if (std::isnan(got) && std::isnan(want)) continue;
    if (bits_of(got) != bits_of(want)) {
      if (failures++ < 3) {
        std::printf("FAIL fused_multiply_add(%a, %a, %a) = %a, std::fma %a\n",
                    static_cast<double>(a), static_cast<double>(b), static_cast<double>(c),
                    static_cast<double>(got), static_cast<double>(want));
      }
    }
  }
  std::printf("fused_multiply_add (float32, %s): %ld triples, %ld differ from std::fma\n",
              rmsprop_ext::kFmaInstruction ? "FMA instruction" : "double rounded to odd", kTriples,
              failures);
  return failures == 0 ? 0 : 1;
}
