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

// Runs lanes(ops, i) over [begin, end): one lane at a time up to the vector boundary, full
// vectors, then the tail one lane at a time. `ops` is VectorOps<T>{} or TailOps<T>{}, so the
// caller picks the arithmetic by type and the same lane function serves body, peel and tail.
template <typename T, typename Lanes>
void for_each_lane_group(const T* param, std::int64_t begin, std::int64_t end, Lanes&& lanes) {
  using Vector = VectorOps<T>;
  using Tail = TailOps<T>;
  std::int64_t i = begin;
  for (const std::int64_t peel_end = begin + lanes_to_alignment<Vector>(param, begin, end);
       i < peel_end; ++i) {
    lanes(Tail{}, i);
  }
  for (; i + Vector::kWidth <= end; i += Vector::kWidth) {
    lanes(Vector{}, i);
  }
  for (; i < end; ++i) {
    lanes(Tail{}, i);
  }
}

template <typename T, class V>
void update_range_variant(const ParamBuffers<T>& b, std::int64_t begin, std::int64_t end,
                          const Hyperparams& hp) {
  const Coefficients<VectorOps<T>> vector_coefficients(hp);
  const Coefficients<TailOps<T>> tail_coefficients(hp);
  for_each_lane_group(b.param, begin, end, [&](auto ops, std::int64_t i) {
    using Ops = decltype(ops);
    if constexpr (std::is_same_v<Ops, VectorOps<T>>) {
      update_lanes<Ops, V>(vector_coefficients, b, i);
    } else {
      update_lanes<Ops, V>(tail_coefficients, b, i);
    }
  });
}

template <typename T, class V>
void traffic_range_variant(const ParamBuffers<T>& b, std::int64_t begin, std::int64_t end) {
  for_each_lane_group(b.param, begin, end,
                      [&](auto ops, std::int64_t i) { traffic_lanes<decltype(ops), V>(b, i); });
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

// Calls f(V{}) with the Variant that matches the hyperparameters.
template <typename F>
void dispatch_variant(const Hyperparams& hp, F&& f) {
  const bool coupled_decay = hp.weight_decay != 0.0 && !hp.decoupled_weight_decay;
  with_flag(hp.centered, [&](auto centered) {
    with_flag(hp.momentum > 0.0, [&](auto momentum) {
      with_flag(hp.eps_in_sqrt, [&](auto eps_in_sqrt) {
        with_flag(coupled_decay, [&](auto decay) {
          f(Variant<decltype(centered)::value, decltype(momentum)::value,
                    decltype(eps_in_sqrt)::value, decltype(decay)::value>{});
        });
      });
    });
  });
}

template <typename T>
void update_range_any(const ParamBuffers<T>& b, std::int64_t begin, std::int64_t end,
                      const Hyperparams& hp) {
  dispatch_variant(
      hp, [&](auto variant) { update_range_variant<T, decltype(variant)>(b, begin, end, hp); });
}

template <typename T>
void traffic_range_any(const ParamBuffers<T>& b, std::int64_t begin, std::int64_t end,
                       const Hyperparams& hp) {
  dispatch_variant(
      hp, [&](auto variant) { traffic_range_variant<T, decltype(variant)>(b, begin, end); });
}

}  // namespace

void update_range(const ParamBuffers<float>& b, std::int64_t begin, std::int64_t end,
                  const Hyperparams& hp) {
  update_range_any(b, begin, end, hp);
}

void update_range(const ParamBuffers<double>& b, std::int64_t begin, std::int64_t end,
                  const Hyperparams& hp) {
  update_range_any(b, begin, end, hp);
}

void traffic_range(const ParamBuffers<float>& b, std::int64_t begin, std::int64_t end,
                   const Hyperparams& hp) {
  traffic_range_any(b, begin, end, hp);
}

void traffic_range(const ParamBuffers<double>& b, std::int64_t begin, std::int64_t end,
                   const Hyperparams& hp) {
  traffic_range_any(b, begin, end, hp);
}

}  // namespace rmsprop_ext::RMSPROP_KERNEL_NS
