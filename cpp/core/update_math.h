// The RMSProp arithmetic for one group of lanes, written once and used by the vector body and the
// scalar tail alike, so the two can never disagree.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "rmsprop.h"

namespace rmsprop_ext {

enum class Momentum { kNone, kHeavyBall, kNesterov };

// The options that change which buffers are touched, which operations run or how they round are
// compile-time, so the inner loop has no branches. Maximize and the learning rate's place are
// multiplications by constants that are exactly 1 when unused, so they stay run-time; so are the
// options beyond torch's (see Options).
// Coupled weight decay: none, or grad + wd * param rounded once or twice (see complex_pairs).
enum class Decay { kNone, kFused, kSeparate };

// Which options a variant computes. kTorch: torch.optim.RMSprop's and no other, so that the loop
// holds only torch's operations (eps outside the square root; maximize's sign folded into the
// constants wherever the gradient's sign cancels). kExtended: also eps inside the square root, the
// bias correction and the decoupled weight decay, as constants that leave a value unchanged where
// unused (eps added at both places, zero at one; factors of exactly 1), so one variant serves every
// combination. A step bound by its arithmetic (MKL's square roots, in cache) spent about a tenth of
// its time on those multiplications by 1, hence the two kinds.
enum class Options { kTorch, kExtended };

// How a 16-bit parameter with state of its dtype rounds: each stored value once, or the result of
// every operation as torch does (Hyperparams::round_each_op), in the elements of torch's vector
// loops or in those after them, where its add(other, alpha=) rounds the product first.
enum class Rounding { kPerStore, kTorchVector, kTorchScalar };

// kRoot: the square root, the CPU's (kIeee) or one of MKL's (Ops::mkl_sqrt). kCompensation: how a
// 16-bit parameter is stored.
template <bool kCentered, Momentum kMomentum, Options kOptions, Decay kDecay, bool kFused,
          SquareRoot kRoot = SquareRoot::kIeee, Compensation kCompensation = Compensation::kNone,
          Rounding kRounding = Rounding::kPerStore>
struct Variant {
  static constexpr bool centered = kCentered;
  static constexpr bool momentum = kMomentum != Momentum::kNone;
  static constexpr bool nesterov = kMomentum == Momentum::kNesterov;
  static constexpr bool extended = kOptions == Options::kExtended;
  static constexpr bool coupled_decay = kDecay != Decay::kNone;
  // Whether the gradient takes maximize's sign before anything else: where the sign matters
  // before the division (the mean gradient, the weight decay) or the variant takes any option.
  // Elsewhere the square cancels it and the division's constant carries it.
  static constexpr bool signs_grad =
      kOptions == Options::kExtended || kCentered || kDecay != Decay::kNone;
  static constexpr bool fused_decay = kDecay == Decay::kFused;
  static constexpr bool fused = kFused;
  static constexpr SquareRoot root = kRoot;
  static constexpr Compensation compensation = kCompensation;
  static constexpr bool round_each_op = kRounding != Rounding::kPerStore;
  static constexpr bool torch_scalar_add = kRounding == Rounding::kTorchScalar;
  // The same variant in the elements after torch's vector loops.
  using TorchScalar = Variant<kCentered, kMomentum, kOptions, kDecay, kFused, kRoot, kCompensation,
                              Rounding::kTorchScalar>;
  // The same variant for loops that take the square root apart from the lanes (between two
  // passes, by one function for the whole block): there the root form changes nothing, so every
  // form of a variant shares the instantiation of its IEEE form.
  using RootApart = Variant<kCentered, kMomentum, kOptions, kDecay, kFused, SquareRoot::kIeee,
                            kCompensation, kRounding>;
};

// The result v of one of torch's operations as torch's 16-bit kernels leave it: rounded to the
// parameter's dtype in a round-each-op variant, v itself otherwise.
template <class Ops, class V, class B>
inline typename Ops::Vec op_result(const B& b, typename Ops::Vec v) {
  if constexpr (V::round_each_op) {
    return Ops::rounded(b.param, v);
  } else {
    return v;
  }
}

// A factor known to be exactly 1: a * b + c is then the plain sum, one addition instead of a
// multiply-add (or a product and a sum), the same bits.
struct UnitScale {};

// a * b + c rounded once (kFused: FMA) or after the product and after the sum; b may be UnitScale.
template <class Ops, bool kFused, class Factor>
inline typename Ops::Vec rounded_multiply_add(typename Ops::Vec a, Factor b, typename Ops::Vec c) {
  if constexpr (std::is_same_v<Factor, UnitScale>) {
    return Ops::add(a, c);
  } else if constexpr (kFused) {
    return Ops::mul_add(a, b, c);
  } else {
    return Ops::add(Ops::mul(a, b), c);
  }
}

// a * b + c rounded as the variant says.
template <class Ops, class V>
inline typename Ops::Vec multiply_add(typename Ops::Vec a, typename Ops::Vec b,
                                      typename Ops::Vec c) {
  return rounded_multiply_add<Ops, V::fused>(a, b, c);
}

// torch's x.add(y, alpha=a) as the variant rounds it: a * y + x rounded as the variant's
// multiply-adds (and to the dtype in a round-each-op variant), or, after torch's vector loop, the
// product rounded to the dtype first.
template <class Ops, class V, class B>
inline typename Ops::Vec torch_add(const B& b, typename Ops::Vec x, typename Ops::Vec alpha,
                                   typename Ops::Vec y) {
  if constexpr (V::torch_scalar_add) {
    return op_result<Ops, V>(b, Ops::add(op_result<Ops, V>(b, Ops::mul(alpha, y)), x));
  } else {
    return op_result<Ops, V>(b, multiply_add<Ops, V>(alpha, y, x));
  }
}

// Always inlined: GCC left MKL's forms (the longest bodies) out of line, a call per vector that
// spills every vector register; that doubled the time of the avx2 and avx512 kernels' in-cache
// step with MKL's SSE4.2 root on an AMD EPYC.
template <class Ops, class V>
[[gnu::always_inline]] inline typename Ops::Vec square_root(typename Ops::Vec x) {
  if constexpr (V::root == SquareRoot::kIeee) {
    return Ops::sqrt(x);
  } else {
    return Ops::template mkl_sqrt<V::root>(x);
  }
}

// Hyperparameters rounded to the buffer's type once and broadcast into vectors once per call, as
// torch rounds its Python-float scalars to the tensor's dtype.
template <class Ops>
struct Coefficients {
  using T = typename Ops::Scalar;
  using Vec = typename Ops::Vec;
  Vec grad_sign, weight_decay, param_decay, alpha, one_minus_alpha, lerp_coefficient, bias_scale,
      eps, eps_inside, eps_outside, momentum, step_scale, momentum_update_scale, neg_lr, zero;
  // step_scale and neg_lr times maximize's sign, for the variants that leave the gradient unsigned
  // (Variant::signs_grad false): the products are the same bits.
  Vec signed_step_scale, signed_neg_lr;
  // torch's lerp(a, g, w) is a + w * (g - a) for |w| < 0.5 and g + (w - 1) * (g - a) otherwise,
  // as its vector loop computes it. (Its scalar tail computes g - (g - a) * (1 - w), the same
  // value but for the sign of a zero: with w = 1 (alpha = 0) and g = -0, the last few elements
  // of torch's grad_avg can hold the other zero. It never reaches the parameters.)
  bool lerp_from_start;
  // The stochastic rounding's key for the elements this call updates (see random_key).
  RandomKey key{};

  Coefficients(const Hyperparams& hp, double step)
      : grad_sign(Ops::broadcast(hp.maximize ? T(-1) : T(1))),
        weight_decay(
            Ops::broadcast(hp.decoupled_weight_decay ? T(0) : static_cast<T>(hp.weight_decay))),
        param_decay(Ops::broadcast(
            hp.decoupled_weight_decay ? static_cast<T>(1.0 - hp.lr * hp.weight_decay) : T(1))),
        alpha(Ops::broadcast(static_cast<T>(hp.alpha))),
        one_minus_alpha(Ops::broadcast(static_cast<T>(1.0 - hp.alpha))),
        bias_scale(Ops::broadcast(
            hp.bias_correction ? static_cast<T>(1.0 / (1.0 - std::pow(hp.alpha, step))) : T(1))),
        eps(Ops::broadcast(static_cast<T>(hp.eps))),
        eps_inside(Ops::broadcast(hp.eps_in_sqrt ? static_cast<T>(hp.eps) : T(0))),
        eps_outside(Ops::broadcast(hp.eps_in_sqrt ? T(0) : static_cast<T>(hp.eps))),
        momentum(Ops::broadcast(static_cast<T>(hp.momentum))),
        step_scale(Ops::broadcast(hp.lr_in_momentum ? static_cast<T>(hp.lr) : T(1))),
        momentum_update_scale(Ops::broadcast(hp.lr_in_momentum ? T(-1) : static_cast<T>(-hp.lr))),
        neg_lr(Ops::broadcast(static_cast<T>(-hp.lr))),
        zero(Ops::broadcast(T(0))),
        signed_step_scale(Ops::mul(step_scale, grad_sign)),
        signed_neg_lr(Ops::mul(neg_lr, grad_sign)) {
    const T weight = static_cast<T>(1.0 - hp.alpha);
    lerp_from_start = std::abs(weight) < T(0.5);
    lerp_coefficient = Ops::broadcast(lerp_from_start ? weight : static_cast<T>(weight - T(1)));
  }
};

// What the first half of an update hands to the second: the gradient as used (coupled decay
// applied; maximize's sign too, unless the variant leaves it to the division's constant), the
// parameter after decoupled decay, and the value whose square root makes the
// denominator (eps included when it goes inside the root).
template <class Ops>
struct StateLanes {
  typename Ops::Vec param, grad, radicand;
};

// x times one of the extended options' factors (the decoupled decay's, the bias correction's),
// in the variants that have them; x itself in the others, where the factor would be 1.
template <class Ops, class V>
inline typename Ops::Vec times_option_factor(typename Ops::Vec x, typename Ops::Vec factor) {
  if constexpr (V::extended) {
    return Ops::mul(x, factor);
  } else {
    return x;
  }
}

template <class Ops, class V, class B>
inline typename Ops::Vec decayed_param(const Coefficients<Ops>& c, const B& b, std::int64_t i) {
  return times_option_factor<Ops, V>(Ops::load(b.param + i), c.param_decay);
}

// The first half of update_lanes, up to the square root: updates square_avg and grad_avg. The
// operations and their rounding are torch.optim.RMSprop's, one by one (its for-loop: add, mul_,
// addcmul_, lerp_, addcmul, sqrt, add_, addcdiv_), so that with the same rounding of a * b + c
// and the same square root the results are bitwise torch's.
template <class Ops, class V, class B>
[[gnu::always_inline]] inline StateLanes<Ops> state_lanes(const Coefficients<Ops>& c, const B& b,
                                                          std::int64_t i) {
  using Vec = typename Ops::Vec;
  const Vec param = Ops::load(b.param + i);
  Vec grad = Ops::load(b.grad + i);
  if constexpr (V::signs_grad) {
    grad = Ops::mul(grad, c.grad_sign);
  }
  if constexpr (V::coupled_decay) {
    // grad.add(param, alpha=wd)
    if constexpr (V::round_each_op) {
      grad = torch_add<Ops, V>(b, grad, c.weight_decay, param);
    } else {
      grad = V::fused_decay ? Ops::mul_add(c.weight_decay, param, grad)
                            : Ops::add(Ops::mul(c.weight_decay, param), grad);
    }
  }

  // square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha). The step goes on with the
  // value as stored, as torch's does (it matters for 16-bit state only).
  const Vec square_avg = Ops::store_rounded(
      b.square_avg + i,
      multiply_add<Ops, V>(Ops::mul(c.one_minus_alpha, grad), grad,
                           op_result<Ops, V>(b, Ops::mul(Ops::load(b.square_avg + i), c.alpha))));

  Vec variance = times_option_factor<Ops, V>(square_avg, c.bias_scale);
  if constexpr (V::centered) {
    // grad_avg.lerp_(grad, 1 - alpha)
    const Vec old_grad_avg = Ops::load(b.grad_avg + i);
    const Vec grad_avg = Ops::store_rounded(
        b.grad_avg + i, multiply_add<Ops, V>(c.lerp_coefficient, Ops::sub(grad, old_grad_avg),
                                             c.lerp_from_start ? old_grad_avg : grad));
    const Vec mean = times_option_factor<Ops, V>(grad_avg, c.bias_scale);
    // square_avg.addcmul(grad_avg, grad_avg, value=-1). s - a^2 is a variance, but once a has
    // converged on a steady gradient rounding can leave it a hair below zero, where torch's
    // square root turns the whole update into NaN. Clamp it. The operand order matters: x86 max
    // returns its second operand when either is NaN, so max(0, v) keeps a NaN v (NaN inputs
    // still propagate); ScalarOps::max matches this.
    const Vec centered_variance =
        op_result<Ops, V>(b, V::fused ? Ops::neg_mul_add(mean, mean, variance)
                                      : Ops::sub(variance, Ops::mul(mean, mean)));
    variance = Ops::max(c.zero, centered_variance);
  }
  if constexpr (V::extended) {
    variance = Ops::add(variance, c.eps_inside);
  }
  return {times_option_factor<Ops, V>(param, c.param_decay), grad, variance};
}

// Stores param + direction * scale as the new parameter. A float32 or float64 parameter (and a
// 16-bit one without compensation) takes it rounded as the variant says; with Kahan summation the
// sum also adds the compensation buffer, which keeps what the rounding to 16 bits lost; with
// stochastic rounding it is rounded up or down at random in proportion to its distance.
template <class Ops, class V, class B, class Scale>
inline void store_param(const Coefficients<Ops>& c, const B& b, std::int64_t i,
                        typename Ops::Vec param, typename Ops::Vec direction, Scale scale) {
  using Vec = typename Ops::Vec;
  if constexpr (V::compensation == Compensation::kKahan) {
    const Vec change =
        rounded_multiply_add<Ops, true>(direction, scale, Ops::load(b.compensation + i));
    const Vec stored = Ops::store_rounded(b.param + i, Ops::add(param, change));
    Ops::store(b.compensation + i, Ops::sub(change, Ops::sub(stored, param)));
  } else if constexpr (V::compensation == Compensation::kStochastic) {
    Ops::store_stochastic(b.param + i, rounded_multiply_add<Ops, true>(direction, scale, param),
                          Ops::random_bits(c.key, static_cast<std::uint32_t>(b.first_index + i)));
  } else {
    Ops::store(b.param + i, rounded_multiply_add<Ops, V::fused>(direction, scale, param));
  }
}

// The second half of update_lanes, from the square root of the radicand on: updates the momentum
// buffer and the parameter.
template <class Ops, class V, class B>
[[gnu::always_inline]] inline void param_lanes(const Coefficients<Ops>& c, const B& b,
                                               std::int64_t i, typename Ops::Vec param,
                                               typename Ops::Vec grad, typename Ops::Vec root) {
  using Vec = typename Ops::Vec;
  root = op_result<Ops, V>(b, root);
  // avg.add_(eps)
  const Vec denom = op_result<Ops, V>(b, Ops::add(root, V::extended ? c.eps_outside : c.eps));
  if constexpr (V::momentum) {
    // buf.mul_(momentum).addcdiv_(grad, avg[, value=lr]): the quotient first, then the sum.
    const Vec scaled_step =
        Ops::div(Ops::mul(V::signs_grad ? c.step_scale : c.signed_step_scale, grad), denom);
    const Vec buffer = Ops::store_rounded(
        b.momentum_buffer + i,
        Ops::add(op_result<Ops, V>(b, Ops::mul(Ops::load(b.momentum_buffer + i), c.momentum)),
                 scaled_step));
    Vec direction = buffer;
    if constexpr (V::nesterov) {
      direction = multiply_add<Ops, V>(c.momentum, buffer, scaled_step);
    }
    // param.add_(buf, alpha=-lr), or param.add_(-buf) with the learning rate in the buffer
    if constexpr (V::round_each_op) {
      Ops::store(b.param + i, torch_add<Ops, V>(b, param, c.momentum_update_scale, direction));
    } else {
      store_param<Ops, V>(c, b, i, param, direction, c.momentum_update_scale);
    }
  } else {
    // param.addcdiv_(grad, avg, value=-lr): (-lr * grad) / avg, then the sum
    store_param<Ops, V>(c, b, i, param,
                        Ops::div(Ops::mul(V::signs_grad ? c.neg_lr : c.signed_neg_lr, grad), denom),
                        UnitScale{});
  }
}

// The update of lanes [i, i + Ops::kWidth) from the square root on, given the first half's lanes.
template <class Ops, class V, class B>
[[gnu::always_inline]] inline void finish_lanes(const Coefficients<Ops>& c, const B& b,
                                                std::int64_t i, const StateLanes<Ops>& lanes) {
  param_lanes<Ops, V>(c, b, i, lanes.param, lanes.grad, square_root<Ops, V>(lanes.radicand));
}

// Updates lanes [i, i + Ops::kWidth) of one parameter: reads param, grad and state once, writes
// param and state once. Always inlined, with its two halves: it is the body of every loop, and
// whether GCC inlines it otherwise depends on how much else the kernel's file holds (adding the
// staged loop made it call the bf16 forms' out of line, a call per vector).
template <class Ops, class V, class B>
[[gnu::always_inline]] inline void update_lanes(const Coefficients<Ops>& c, const B& b,
                                                std::int64_t i) {
  finish_lanes<Ops, V>(c, b, i, state_lanes<Ops, V>(c, b, i));
}

// One buffer's traffic in traffic_lanes: its lanes read and written back plus zero.
template <class Ops, typename T>
[[gnu::always_inline]] inline void rewrite_lanes(T* buffer, std::int64_t i,
                                                 typename Ops::Vec zero_grad) {
  Ops::store(buffer + i, Ops::add(Ops::load(buffer + i), zero_grad));
}

// The roofline companion of update_lanes: the same loads and stores, in the same order, for the
// same variant, with one add per buffer instead of the RMSProp arithmetic, so that the two differ
// in arithmetic only. It writes back buffer + 0 * grad, which IEEE rules forbid the compiler to
// fold away, so the buffers keep their values (for finite grads) and the kernel can be timed on
// the very buffers the real update uses. kState false leaves the state to the caller (8-bit state,
// whose bytes are not vectors of the parameter's type). kPass 1 and 2 split the traffic as the
// update's two passes split it: square_avg and grad_avg, then the parameter, the momentum buffer
// and the compensation (kPass 0: all of it). Always inlined: with a group of vectors per cache line
// GCC called it out of line for bf16 on avx512, a call per vector in a loop meant to time memory
// alone.
template <class Ops, class V, class B, bool kState = true, int kPass = 0>
[[gnu::always_inline]] inline void traffic_lanes(const B& b, std::int64_t i) {
  using Vec = typename Ops::Vec;
  constexpr bool kFirst = kPass != 2;
  constexpr bool kSecond = kPass != 1;
  const Vec param = kSecond ? Ops::load(b.param + i) : Ops::broadcast(0);
  const Vec zero_grad = Ops::mul(Ops::load(b.grad + i), Ops::broadcast(0));
  if constexpr (kSecond && V::compensation == Compensation::kKahan) {
    rewrite_lanes<Ops>(b.compensation, i, zero_grad);
  }
  if constexpr (kState && kFirst) {
    rewrite_lanes<Ops>(b.square_avg, i, zero_grad);
    if constexpr (V::centered) {
      rewrite_lanes<Ops>(b.grad_avg, i, zero_grad);
    }
  }
  if constexpr (kState && kSecond && V::momentum) {
    rewrite_lanes<Ops>(b.momentum_buffer, i, zero_grad);
  }
  if constexpr (kSecond) {
    Ops::store(b.param + i, Ops::add(param, zero_grad));
  }
}

}  // namespace rmsprop_ext
