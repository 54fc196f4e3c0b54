// The core on its own, without Python: every kernel this build has and this CPU runs, against a
// plain double-precision RMSProp written here, for every option of the update, sizes with vector
// tails, several parameters per call and several threads. Built by CMake with
// -DRMSPROP_CORE_TESTS=ON (also when cross-compiling, e.g. for aarch64 under qemu). Exit status 0
// when every case agrees; otherwise the first disagreements are printed.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/isa.h"
#include "core/rmsprop.h"

namespace {

using rmsprop_ext::bfloat16;
using rmsprop_ext::float16;
using rmsprop_ext::Hyperparams;
using rmsprop_ext::ParamBuffers;

struct Case {
  const char* name;
  Hyperparams hp;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  auto add = [&out](const char* name, auto change) {
    Hyperparams hp;
    hp.lr = 1e-2;
    change(hp);
    out.push_back({name, hp});
  };
  add("defaults", [](Hyperparams&) {});
  add("two roundings", [](Hyperparams& hp) { hp.fused_multiply_add = false; });
  add("weight decay", [](Hyperparams& hp) { hp.weight_decay = 0.1; });
  add("decoupled weight decay", [](Hyperparams& hp) {
    hp.weight_decay = 0.1;
    hp.decoupled_weight_decay = true;
  });
  add("momentum", [](Hyperparams& hp) { hp.momentum = 0.9; });
  add("centered", [](Hyperparams& hp) { hp.centered = true; });
  add("momentum centered maximize", [](Hyperparams& hp) {
    hp.momentum = 0.5;
    hp.centered = true;
    hp.maximize = true;
    hp.alpha = 0.9;
  });
  add("eps in sqrt", [](Hyperparams& hp) {
    hp.eps_in_sqrt = true;
    hp.eps = 1e-6;
  });
  add("lr in momentum, nesterov", [](Hyperparams& hp) {
    hp.momentum = 0.9;
    hp.lr_in_momentum = true;
    hp.nesterov = true;
  });
  // (not with centered: at step 1 the corrected variance is g^2 - g^2, all rounding noise)
  add("bias correction, momentum", [](Hyperparams& hp) {
    hp.bias_correction = true;
    hp.momentum = 0.9;
    hp.fused_multiply_add = false;
  });
  return out;
}

// Deterministic values in about [-2, 2).
struct Numbers {
  std::uint64_t state;
  double next() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) / 9007199254740992.0 * 4.0 - 2.0;
  }
};

// One step of every variant in double, as python/rmsprop_ext/reference.py writes it.
struct Reference {
  std::vector<double> x, s, b, a;

  void step(const std::vector<double>& grad, const Hyperparams& hp, int t) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      double g = hp.maximize ? -grad[i] : grad[i];
      if (hp.weight_decay != 0.0 && hp.decoupled_weight_decay) {
        x[i] *= 1.0 - hp.lr * hp.weight_decay;
      } else if (hp.weight_decay != 0.0) {
        g += hp.weight_decay * x[i];
      }
      s[i] = hp.alpha * s[i] + (1.0 - hp.alpha) * g * g;
      const double correction = hp.bias_correction ? 1.0 - std::pow(hp.alpha, t) : 1.0;
      double variance = s[i] / correction;
      if (hp.centered) {
        a[i] = hp.alpha * a[i] + (1.0 - hp.alpha) * g;
        const double mean = a[i] / correction;
        variance = std::fmax(variance - mean * mean, 0.0);
      }
      const double denom =
          hp.eps_in_sqrt ? std::sqrt(variance + hp.eps) : std::sqrt(variance) + hp.eps;
      const double inside = hp.lr_in_momentum ? hp.lr : 1.0;
      const double outside = hp.lr_in_momentum ? 1.0 : hp.lr;
      double direction = inside * g / denom;
      if (hp.momentum > 0.0) {
        b[i] = hp.momentum * b[i] + direction;
        direction = hp.nesterov ? direction + hp.momentum * b[i] : b[i];
      }
      x[i] -= outside * direction;
    }
  }
};

double as_double(float v) { return v; }
double as_double(double v) { return v; }
double as_double(bfloat16 v) { return rmsprop_ext::to_float(v); }
double as_double(float16 v) { return rmsprop_ext::to_float(v); }

template <typename T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, rmsprop_ext::code8>) {
    static_cast<void>(v);
    return {0};  // only zeros are made: with block exponent -126 they are the encoded zeros
  } else if constexpr (std::is_same_v<T, bfloat16>) {
    return rmsprop_ext::to_bfloat16(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, float16>) {
    return rmsprop_ext::to_float16(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

// Agreement after kSteps steps: |native - reference| <= tolerance * (1 + |reference|), the
// reference keeping every value in double. float32 and float64 as the Python reference tests;
// 16-bit parameters or state: a few of their ulps. A wrong formula misses by far more.
template <typename T>
double tolerance() {
  if constexpr (std::is_same_v<T, double>) return 1e-12;
  if constexpr (std::is_same_v<T, float>) return 5e-5;
  return 1.0 / 128;
}

template <typename P, typename S>
double tolerance() {
  return std::fmax(tolerance<P>(), tolerance<S>());
}

constexpr int kSteps = 3;

struct Tally {
  long cases = 0, failures = 0;
  double worst = 0;
};

// The buffers of one parameter of each size in `sizes`, after kSteps steps taken in one call per
// step with the active kernel (P param, S state), and the double reference's parameters.
template <typename P, typename S>
struct Run {
  std::vector<std::vector<P>> params, compensation;
  std::vector<std::vector<S>> square_avg, momentum_buffer, grad_avg;
  // 8-bit state: one exponent per block of kQuantBlock codes of each buffer.
  std::vector<std::vector<std::int8_t>> square_avg_exponents, momentum_buffer_exponents,
      grad_avg_exponents;
  std::vector<Reference> refs;

  Run(const Hyperparams& hp, const std::vector<std::int64_t>& sizes, int threads) {
    const std::size_t count = sizes.size();
    params.resize(count);
    compensation.resize(count);
    square_avg.resize(count);
    momentum_buffer.resize(count);
    grad_avg.resize(count);
    refs.resize(count);
    square_avg_exponents.resize(count);
    momentum_buffer_exponents.resize(count);
    grad_avg_exponents.resize(count);
    std::vector<std::vector<P>> grads(count);
    std::vector<std::vector<std::vector<double>>> grad_values(count);
    Numbers numbers{static_cast<std::uint64_t>(count * 7 + 1)};
    for (std::size_t k = 0; k < count; ++k) {
      const auto n = static_cast<std::size_t>(sizes[k]);
      params[k].resize(n);
      refs[k].x.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        params[k][i] = from_double<P>(numbers.next());
        refs[k].x[i] = as_double(params[k][i]);
      }
      compensation[k].assign(n, from_double<P>(0.0));
      square_avg[k].assign(n, from_double<S>(0.0));
      momentum_buffer[k].assign(n, from_double<S>(0.0));
      grad_avg[k].assign(n, from_double<S>(0.0));
      const auto blocks = static_cast<std::size_t>((sizes[k] + rmsprop_ext::kQuantBlock - 1) /
                                                   rmsprop_ext::kQuantBlock);
      square_avg_exponents[k].assign(blocks, -126);
      momentum_buffer_exponents[k].assign(blocks, -126);
      grad_avg_exponents[k].assign(blocks, -126);
      refs[k].s.assign(n, 0.0);
      refs[k].b.assign(n, 0.0);
      refs[k].a.assign(n, 0.0);
      grads[k].resize(n);
      for (int t = 0; t < kSteps; ++t) {
        std::vector<double> g(n);
        for (std::size_t i = 0; i < n; ++i) {
          double value = numbers.next();
          if constexpr (std::is_same_v<P, float16> || std::is_same_v<S, float16>) {
            // float16 state cannot hold 0.01 * g^2 of small gradients (below 2^-24 it is zero,
            // and the step divides by eps): gradients of magnitude 0.5 to 2 keep it in range.
            value = std::copysign(0.5 + std::fabs(value) * 0.75, value);
          }
          g[i] = as_double(from_double<P>(value));
        }
        grad_values[k].push_back(std::move(g));
      }
    }
    for (int t = 1; t <= kSteps; ++t) {
      const auto step_index = static_cast<std::size_t>(t - 1);
      std::vector<ParamBuffers<P, S>> items(count);
      for (std::size_t k = 0; k < count; ++k) {
        for (std::size_t i = 0; i < grads[k].size(); ++i) {
          grads[k][i] = from_double<P>(grad_values[k][step_index][i]);
        }
        ParamBuffers<P, S>& b = items[k];
        b.param = params[k].data();
        b.grad = grads[k].data();
        b.square_avg = square_avg[k].data();
        b.momentum_buffer = momentum_buffer[k].data();
        b.grad_avg = grad_avg[k].data();
        b.compensation = compensation[k].data();
        if constexpr (std::is_same_v<S, rmsprop_ext::code8>) {
          b.square_avg_exponents = square_avg_exponents[k].data();
          b.momentum_buffer_exponents = momentum_buffer_exponents[k].data();
          b.grad_avg_exponents = grad_avg_exponents[k].data();
        }
        b.size = sizes[k];
        b.step = t;
        b.stream = k;
        refs[k].step(grad_values[k][step_index], hp, t);
      }
      rmsprop_ext::step(items.data(), items.size(), hp, threads);
    }
  }
};

// The parameters against the double reference, within tolerance<P, S>().
template <typename P, typename S>
void check(const Case& c, const std::vector<std::int64_t>& sizes, int threads, Tally& tally,
           const std::string& where) {
  const Run<P, S> run(c.hp, sizes, threads);
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    ++tally.cases;
    int shown = 0;
    for (std::size_t i = 0; i < run.params[k].size(); ++i) {
      const double want = run.refs[k].x[i];
      const double got = as_double(run.params[k][i]);
      const double error = std::fabs(got - want) / (1.0 + std::fabs(want));
      if (error > tally.worst) tally.worst = error;
      if (!(error <= tolerance<P, S>())) {
        ++tally.failures;
        if (shown++ < 3) {
          std::printf("FAIL %s, %s, size %lld, element %zu: %.17g, reference %.17g\n",
                      where.c_str(), c.name, static_cast<long long>(sizes[k]), i, got, want);
        }
      }
    }
  }
}

template <typename T>
bool same_bytes(const std::vector<std::vector<T>>& a, const std::vector<std::vector<T>>& b) {
  for (std::size_t k = 0; k < a.size(); ++k) {
    if (a[k].size() != b[k].size() ||
        (!a[k].empty() && std::memcmp(a[k].data(), b[k].data(), a[k].size() * sizeof(T)) != 0)) {
      return false;
    }
  }
  return true;
}

template <typename P, typename S>
Tally check_pair(const char* pair, const std::string& isa) {
  Tally tally;
  const std::vector<std::vector<std::int64_t>> size_sets = {
      {0},  {1},    {7},    {8},     {15},
      {16}, {17},   {31},   {33},    {63},
      {65}, {1023}, {4099}, {70001}, {5, 4096, 129, 0, 33}};
  for (const Case& c : cases()) {
    for (const auto& sizes : size_sets) {
      for (int threads : {1, 3}) {
        check<P, S>(c, sizes, threads, tally, isa + " " + pair + " x" + std::to_string(threads));
      }
    }
  }
  std::printf("%-8s %-18s %5ld cases, worst relative error %.3g (tolerance %.3g), %ld failures\n",
              isa.c_str(), pair, tally.cases, tally.worst, tolerance<P, S>(), tally.failures);
  return tally;
}

// Every kernel against the scalar one, bit for bit, in every variant, also those the double
// reference does not model: torch's rounding of each operation, Kahan summation and stochastic
// rounding of 16-bit parameters, and 8-bit state (stochastically rounded codes and their block
// exponents). Returns the number of differing runs.
template <typename P, typename S>
long check_same_bits(const char* pair) {
  constexpr bool kSixteenBit = std::is_same_v<P, bfloat16> || std::is_same_v<P, float16>;
  std::vector<Case> variants = cases();
  if constexpr (kSixteenBit) {
    for (const Case& c : cases()) {
      Case kahan = c, stochastic = c;
      kahan.name = "kahan";
      kahan.hp.compensation = rmsprop_ext::Compensation::kKahan;
      stochastic.name = "stochastic";
      stochastic.hp.compensation = rmsprop_ext::Compensation::kStochastic;
      stochastic.hp.seed = 7;
      variants.push_back(kahan);
      variants.push_back(stochastic);
      if constexpr (std::is_same_v<P, S> && !std::is_same_v<S, rmsprop_ext::code8>) {
        Case torch = c;
        torch.name = "torch's rounding";
        torch.hp.round_each_op = true;
        torch.hp.torch_add_block = 32;
        torch.hp.torch_threads = 2;
        variants.push_back(torch);
      }
    }
  }
  const std::vector<std::vector<std::int64_t>> size_sets = {{1023}, {70001}, {5, 4096, 129, 0, 33}};
  long runs = 0, failures = 0;
  for (const Case& c : variants) {
    for (const auto& sizes : size_sets) {
      for (int threads : {1, 3}) {
        rmsprop_ext::set_active_isa(rmsprop_ext::Isa::kScalar);
        const Run<P, S> base(c.hp, sizes, threads);
        for (rmsprop_ext::Isa isa : rmsprop_ext::available_isas()) {
          if (isa == rmsprop_ext::Isa::kScalar) continue;
          rmsprop_ext::set_active_isa(isa);
          const Run<P, S> run(c.hp, sizes, threads);
          ++runs;
          if (!(same_bytes(run.params, base.params) &&
                same_bytes(run.square_avg, base.square_avg) &&
                same_bytes(run.momentum_buffer, base.momentum_buffer) &&
                same_bytes(run.grad_avg, base.grad_avg) &&
                same_bytes(run.compensation, base.compensation) &&
                same_bytes(run.square_avg_exponents, base.square_avg_exponents) &&
                same_bytes(run.momentum_buffer_exponents, base.momentum_buffer_exponents) &&
                same_bytes(run.grad_avg_exponents, base.grad_avg_exponents))) {
            ++failures;
            std::printf("FAIL %s %s, %s, %zu sizes from %lld, x%d: not the scalar kernel's bits\n",
                        rmsprop_ext::isa_name(isa), pair, c.name, sizes.size(),
                        static_cast<long long>(sizes[0]), threads);
          }
        }
      }
    }
  }
  std::printf("%-18s %5ld runs of the other kernels against scalar, %ld with other bits\n", pair,
              runs, failures);
  return failures;
}

}  // namespace

int main() {
  long failures = 0;
  for (rmsprop_ext::Isa isa : rmsprop_ext::available_isas()) {
    rmsprop_ext::set_active_isa(isa);
    const std::string name = rmsprop_ext::isa_name(isa);
    failures += check_pair<float, float>("float32", name).failures;
    failures += check_pair<double, double>("float64", name).failures;
    failures += check_pair<bfloat16, bfloat16>("bfloat16", name).failures;
    failures += check_pair<bfloat16, float>("bfloat16/float32", name).failures;
    failures += check_pair<float16, float16>("float16", name).failures;
    failures += check_pair<float, bfloat16>("float32/bfloat16", name).failures;
  }
  failures += check_same_bits<float, float>("float32");
  failures += check_same_bits<double, double>("float64");
  failures += check_same_bits<bfloat16, bfloat16>("bfloat16");
  failures += check_same_bits<bfloat16, float>("bfloat16/float32");
  failures += check_same_bits<float16, float16>("float16");
  failures += check_same_bits<float16, float>("float16/float32");
  failures += check_same_bits<float, bfloat16>("float32/bfloat16");
  failures += check_same_bits<float, rmsprop_ext::code8>("float32/8bit");
  failures += check_same_bits<bfloat16, rmsprop_ext::code8>("bfloat16/8bit");
  failures += check_same_bits<float16, rmsprop_ext::code8>("float16/8bit");
  std::printf(failures == 0 ? "all agree\n" : "%ld failures\n", failures);
  return failures == 0 ? 0 : 1;
}
