// The L1 data cache of AMD's Zen cores, as far as the kernels' loops must know it.
#pragma once

#include <cstdint>

namespace rmsprop_ext {

// Whether a line of x and the line of y the same distance into its page cannot both be held in
// the L1 data cache of a Zen to Zen 4 core (Zen 5 showed no such evictions): they fall in one set
// (address bits 6-11) and have the same utag, the 8-bit hash of bits 12-27 that picks the way (bit
// 12 + k XOR bit kPartner[k]; see two_pass_blocks in kernel.cpp and docs/storage_speed.md, "Lines
// that evict each other").
inline bool lines_evict_each_other(const void* x, const void* y) {
  constexpr int kPartner[8] = {27, 26, 25, 20, 21, 22, 23, 24};
  const auto differ = reinterpret_cast<std::uintptr_t>(x) ^ reinterpret_cast<std::uintptr_t>(y);
  if ((differ & 0xFC0) != 0) {
    return false;
  }
  for (int k = 0; k < 8; ++k) {
    if (((differ >> (12 + k) ^ differ >> kPartner[k]) & 1) != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace rmsprop_ext
