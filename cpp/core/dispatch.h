// The kernel of an instruction set, for the drivers (step.cpp, sparse_step.cpp).
#pragma once

#include "isa.h"
#include "kernels.h"

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

}  // namespace rmsprop_ext
