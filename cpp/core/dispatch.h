// What the drivers (step.cpp, sparse_step.cpp) share: the kernel of an instruction set and the
// threads for an amount of work.
#pragma once

#include <algorithm>
#include <cstdint>

#include "isa.h"
#include "kernels.h"
#include "rmsprop.h"

namespace rmsprop_ext {

enum class Work { kUpdate, kTraffic };

// update_range (kUpdate) or traffic_range (kTraffic) of the kernel of `isa`.
template <typename P, typename S>
UpdateRangeFn<P, S> kernel_for(Isa isa, Work work) {
  const bool update = work == Work::kUpdate;
  static_cast<void>(isa);  // unused where the scalar kernel is the only one built
  UpdateRangeFn<P, S> update_fn = &scalar::update_range;
  UpdateRangeFn<P, S> traffic_fn = &scalar::traffic_range;
#if RMSPROP_EXT_HAVE_NEON
  if (isa == Isa::kNeon) {
    update_fn = &neon::update_range;
    traffic_fn = &neon::traffic_range;
  }
#endif
#if RMSPROP_EXT_HAVE_AVX2
  if (isa == Isa::kAvx2) {
    update_fn = &avx2::update_range;
    traffic_fn = &avx2::traffic_range;
  }
#endif
#if RMSPROP_EXT_HAVE_AVX512
  if (isa == Isa::kAvx512) {
    update_fn = &avx512::update_range;
    traffic_fn = &avx512::traffic_range;
  }
#endif
  return update ? update_fn : traffic_fn;
}

// Each thread gets at least this many elements, so small calls use fewer threads.
constexpr std::int64_t kMinElementsPerThread = std::int64_t{1} << 14;

// Threads for `elements` elements of work: num_threads (get_num_threads() when <= 0), fewer where
// each would get under kMinElementsPerThread.
inline int threads_for(std::int64_t elements, int num_threads) {
  const int wanted = num_threads > 0 ? num_threads : get_num_threads();
  const std::int64_t useful = std::max<std::int64_t>(1, elements / kMinElementsPerThread);
  return static_cast<int>(std::min<std::int64_t>(wanted, useful));
}

}  // namespace rmsprop_ext
