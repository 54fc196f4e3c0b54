// The update loop for one instruction set. CMake builds this file once per level with that level's
// compiler flags and RMSPROP_KERNEL_NS set to scalar, avx2 or avx512; nothing here may run before
// the dispatcher has checked that the CPU supports the level.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels.h"
#include "simd_ops.h"
#include "update_math.h"

#ifndef RMSPROP_KERNEL_NS
#error "RMSPROP_KERNEL_NS must name the instruction set this file is compiled for"
#endif

namespace rmsprop_ext::RMSPROP_KERNEL_NS {
namespace {

#if defined(__AVX512F__)
template <typename T>
using VectorOps = Avx512Ops<T>;
constexpr bool kHasFma = true;
#elif defined(__AVX2__) && defined(__FMA__)
template <typename T>
using VectorOps = Avx2Ops<T>;
constexpr bool kHasFma = true;
#else
template <typename T>
using VectorOps = ScalarOps<T, false>;
constexpr bool kHasFma = false;
#endif

// Lanes of the tail round exactly like lanes of the body: both fuse multiply-adds or neither does.
template <typename T>
using TailOps = ScalarOps<T, kHasFma>;

// Lanes to run one at a time before `p + begin` sits on a vector-width boundary. numpy allocates
// large arrays 16 bytes past a cache line, so without this every AVX-512 access of a numpy buffer
// would straddle two lines. The first lanes go through the tail's arithmetic, which rounds exactly
// like the body's, so where the split falls never changes a result.
template <class Ops, typename T>
std::int64_t lanes_to_alignment(const T* p, std::int64_t begin, std::int64_t end) {
  constexpr auto kBytes = static_cast<std::uintptr_t>(sizeof(typename Ops::Vec));
  const auto address = reinterpret_cast<std::uintptr_t>(p + begin);
  const auto lanes = static_cast<std::int64_t>(((kBytes - address % kBytes) % kBytes) / sizeof(T));
  return std::min(lanes, end - begin);
}

template <typename T, class V>
void update_range_variant(const ParamBuffers<T>& b, std::int64_t begin, std::int64_t end,
                          const Hyperparams& hp) {
  using Vector = VectorOps<T>;
  using Tail = TailOps<T>;
  const Coefficients<Vector> vector_coefficients(hp);
  const Coefficients<Tail> tail_coefficients(hp);

  std::int64_t i = begin;
  for (const std::int64_t peel_end = begin + lanes_to_alignment<Vector>(b.param, begin, end);
       i < peel_end; ++i) {
    update_lanes<Tail, V>(tail_coefficients, b, i);
  }
  for (; i + Vector::kWidth <= end; i += Vector::kWidth) {
    update_lanes<Vector, V>(vector_coefficients, b, i);
  }
  for (; i < end; ++i) {
    update_lanes<Tail, V>(tail_coefficients, b, i);
  }
}

template <typename T, class V>
void traffic_range_variant(const ParamBuffers<T>& b, std::int64_t begin, std::int64_t end,
                           const Hyperparams&) {
  std::int64_t i = begin;
  for (const std::int64_t peel_end = begin + lanes_to_alignment<VectorOps<T>>(b.param, begin, end);
       i < peel_end; ++i) {
    traffic_lanes<TailOps<T>, V>(b, i);
  }
  for (; i + VectorOps<T>::kWidth <= end; i += VectorOps<T>::kWidth) {
    traffic_lanes<VectorOps<T>, V>(b, i);
  }
  for (; i < end; ++i) {
    traffic_lanes<TailOps<T>, V>(b, i);
  }
}

// Calls f with std::true_type or std::false_type, turning a run-time flag into a template argument.
template <typename F>
void with_flag(bool flag, F&& f) {
  if (flag) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// Runs Loop<T, Variant<...>>::run with the variant that matches the hyperparameters.
template <typename T, template <typename, class> class Loop>
void dispatch_variant(const ParamBuffers<T>& b, std::int64_t begin, std::int64_t end,
                      const Hyperparams& hp) {
  const bool coupled_decay = hp.weight_decay != 0.0 && !hp.decoupled_weight_decay;
  with_flag(hp.centered, [&](auto centered) {
    with_flag(hp.momentum > 0.0, [&](auto momentum) {
      with_flag(hp.eps_in_sqrt, [&](auto eps_in_sqrt) {
        with_flag(coupled_decay, [&](auto decay) {
          using V = Variant<decltype(centered)::value, decltype(momentum)::value,
                            decltype(eps_in_sqrt)::value, decltype(decay)::value>;
          Loop<T, V>::run(b, begin, end, hp);
        });
      });
    });
  });
}

template <typename T, class V>
struct UpdateLoop {
  static void run(const ParamBuffers<T>& b, std::int64_t begin, std::int64_t end,
                  const Hyperparams& hp) {
    update_range_variant<T, V>(b, begin, end, hp);
  }
};

template <typename T, class V>
struct TrafficLoop {
  static void run(const ParamBuffers<T>& b, std::int64_t begin, std::int64_t end,
                  const Hyperparams& hp) {
    traffic_range_variant<T, V>(b, begin, end, hp);
  }
};

}  // namespace

void update_range(const ParamBuffers<float>& b, std::int64_t begin, std::int64_t end,
                  const Hyperparams& hp) {
  dispatch_variant<float, UpdateLoop>(b, begin, end, hp);
}

void update_range(const ParamBuffers<double>& b, std::int64_t begin, std::int64_t end,
                  const Hyperparams& hp) {
  dispatch_variant<double, UpdateLoop>(b, begin, end, hp);
}

void traffic_range(const ParamBuffers<float>& b, std::int64_t begin, std::int64_t end,
                   const Hyperparams& hp) {
  dispatch_variant<float, TrafficLoop>(b, begin, end, hp);
}

void traffic_range(const ParamBuffers<double>& b, std::int64_t begin, std::int64_t end,
                   const Hyperparams& hp) {
  dispatch_variant<double, TrafficLoop>(b, begin, end, hp);
}

}  // namespace rmsprop_ext::RMSPROP_KERNEL_NS
