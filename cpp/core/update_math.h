// The RMSProp arithmetic for one group of lanes, written once and used by the vector body and the
// scalar tail alike, so the two can never disagree.
#pragma once

#include <cstdint>

#include "rmsprop.h"

namespace rmsprop_ext {

// The options that change which buffers are touched or which operations run are compile-time, so
// the inner loop has no branches. Maximize and decoupled decay are multiplications by constants
// that are exactly 1 when unused, so they stay run-time.
template <bool kCentered, bool kMomentum, bool kEpsInSqrt, bool kCoupledDecay>
struct Variant {
  static constexpr bool centered = kCentered;
  static constexpr bool momentum = kMomentum;
  static constexpr bool eps_in_sqrt = kEpsInSqrt;
  static constexpr bool coupled_decay = kCoupledDecay;
};

// Hyperparameters rounded to the buffer's type once and broadcast into vectors once per call.
template <class Ops>
struct Coefficients {
  using T = typename Ops::Scalar;
  using Vec = typename Ops::Vec;
  Vec grad_sign, weight_decay, param_decay, alpha, one_minus_alpha, eps, momentum, neg_lr, zero;

  explicit Coefficients(const Hyperparams& hp)
      : grad_sign(Ops::broadcast(hp.maximize ? T(-1) : T(1))),
        weight_decay(Ops::broadcast(static_cast<T>(hp.weight_decay))),
        param_decay(Ops::broadcast(
            hp.decoupled_weight_decay ? static_cast<T>(1.0 - hp.lr * hp.weight_decay) : T(1))),
        alpha(Ops::broadcast(static_cast<T>(hp.alpha))),
        one_minus_alpha(Ops::broadcast(static_cast<T>(1.0 - hp.alpha))),
        eps(Ops::broadcast(static_cast<T>(hp.eps))),
        momentum(Ops::broadcast(static_cast<T>(hp.momentum))),
        neg_lr(Ops::broadcast(static_cast<T>(-hp.lr))),
        zero(Ops::broadcast(T(0))) {}
};

// Updates lanes [i, i + Ops::kWidth) of one parameter: reads param, grad and state once, writes
// param and state once.
template <class Ops, class V>
inline void update_lanes(const Coefficients<Ops>& c, const ParamBuffers<typename Ops::Scalar>& b,
                         std::int64_t i) {
  using Vec = typename Ops::Vec;
  Vec param = Ops::load(b.param + i);
  Vec grad = Ops::mul(Ops::load(b.grad + i), c.grad_sign);
  if constexpr (V::coupled_decay) {
    grad = Ops::mul_add(c.weight_decay, param, grad);
  }
  param = Ops::mul(param, c.param_decay);

  const Vec grad_sq = Ops::mul(grad, grad);
  const Vec square_avg =
      Ops::mul_add(c.alpha, Ops::load(b.square_avg + i), Ops::mul(c.one_minus_alpha, grad_sq));
  Ops::store(b.square_avg + i, square_avg);

  Vec variance = square_avg;
  if constexpr (V::centered) {
    const Vec grad_avg =
        Ops::mul_add(c.alpha, Ops::load(b.grad_avg + i), Ops::mul(c.one_minus_alpha, grad));
    Ops::store(b.grad_avg + i, grad_avg);
    // s - a^2 is a variance, but once a has converged on a steady gradient rounding can leave it
    // a hair below zero, where the square root would turn the whole update into NaN. Clamp it.
    // The operand order matters: x86 max returns its second operand when either is NaN, so
    // max(0, v) keeps a NaN v (NaN inputs still propagate); ScalarOps::max matches this.
    variance = Ops::max(c.zero, Ops::neg_mul_add(grad_avg, grad_avg, square_avg));
  }

  Vec denom;
  if constexpr (V::eps_in_sqrt) {
    denom = Ops::sqrt(Ops::add(variance, c.eps));
  } else {
    denom = Ops::add(Ops::sqrt(variance), c.eps);
  }

  Vec direction = Ops::div(grad, denom);
  if constexpr (V::momentum) {
    direction = Ops::mul_add(c.momentum, Ops::load(b.momentum_buffer + i), direction);
    Ops::store(b.momentum_buffer + i, direction);
  }
  Ops::store(b.param + i, Ops::mul_add(c.neg_lr, direction, param));
}

// The roofline companion of update_lanes: the same loads and stores, in the same order, for the
// same variant, with one add per buffer instead of the RMSProp arithmetic, so that the two differ
// in arithmetic only. It writes back buffer + 0 * grad, which IEEE rules forbid the compiler to
// fold away, so the buffers keep their values (for finite grads) and the kernel can be timed on
// the very buffers the real update uses.
template <class Ops, class V>
inline void traffic_lanes(const ParamBuffers<typename Ops::Scalar>& b, std::int64_t i) {
  using Vec = typename Ops::Vec;
  const Vec param = Ops::load(b.param + i);
  const Vec zero_grad = Ops::mul(Ops::load(b.grad + i), Ops::broadcast(0));
  Ops::store(b.square_avg + i, Ops::add(Ops::load(b.square_avg + i), zero_grad));
  if constexpr (V::centered) {
    Ops::store(b.grad_avg + i, Ops::add(Ops::load(b.grad_avg + i), zero_grad));
  }
  if constexpr (V::momentum) {
    Ops::store(b.momentum_buffer + i, Ops::add(Ops::load(b.momentum_buffer + i), zero_grad));
  }
  Ops::store(b.param + i, Ops::add(param, zero_grad));
}

}  // namespace rmsprop_ext
