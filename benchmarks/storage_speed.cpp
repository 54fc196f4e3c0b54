// In-cache speed of every storage form of the update (16-bit parameters and state, 8-bit state,
// Kahan and stochastic rounding), on each instruction set, against what could limit it there: the
// IEEE square root and divide every form takes once per element in float32 (sqrt_divide, the same
// vectors doing only that) and the form's own memory traffic (roofline_step on its buffers). One
// thread, small buffers (they stay in L1/L2), so memory is not what limits a form here: a form
// close to its square-root-and-divide limit is bound by the divider; one far below it spends its
// time on the rest of its arithmetic (conversions, roundings, the 8-bit codes, random bits).
//
//   cmake -S . -B build/core -DRMSPROP_CORE_ONLY=ON -DRMSPROP_CORE_TESTS=ON
//   cmake --build build/core && build/core/rmsprop_storage_speed [rounds] [elements] [isa form]
//
// With an instruction set and a form's name (e.g. avx2 "bf16/bf16 torch"), only that step runs,
// over and over, for a sampling profiler (perf record).
//
//   build/core/rmsprop_storage_speed limit [rounds] [elements] [threads] [isa]
//
// times each form where memory could limit it (default 16,777,216 elements, 2 threads) against
// its compute limit: the same step, the same threads, the same number of elements in one call, but
// each thread updating its own 16,384 elements over and over (in L1/L2), so only the arithmetic is
// timed; and against its roofline at the full size. A form whose compute limit is slower than its
// roofline is bound by its arithmetic at that size, and "of compute limit" says how close it runs.
//
// Every (instruction set, form, kernel) case runs once per round, the cases of a round in a fresh
// random order; each run repeats the kernel until about 2 ms have passed and records nanoseconds
// per element. Reported: medians over the rounds with [min-max], and each limit's time over the
// form's, round by round (median [min-max]).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/isa.h"
#include "core/kernels.h"
#include "core/quantized.h"
#include "core/rmsprop.h"
#include "core/storage.h"
#include "speed_table.h"

namespace {

using rmsprop_ext::bfloat16;
using rmsprop_ext::code8;
using rmsprop_ext::Compensation;
using rmsprop_ext::float16;

// 64-byte aligned storage, as torch allocates, zero-filled.
template <typename T>
struct Buffer {
  T* data = nullptr;
  explicit Buffer(std::size_t n) {
    const std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    data = static_cast<T*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
    std::fill(reinterpret_cast<unsigned char*>(data),
              reinterpret_cast<unsigned char*>(data) + bytes, 0);
  }
  ~Buffer() { std::free(data); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

template <typename T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    return rmsprop_ext::to_bfloat16(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, float16>) {
    return rmsprop_ext::to_float16(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, code8>) {
    // A mid-range code; the block exponents stay 0.
    return code8{static_cast<std::uint8_t>(0x80 + static_cast<int>(v * 16) % 0x40)};
  } else {
    return static_cast<T>(v);
  }
}

// What a form's run can be: the update itself, or its memory traffic alone.
enum class Kernel { kStep, kRoofline };

class Form {
 public:
  virtual ~Form() = default;
  virtual void run(Kernel kernel, int threads) = 0;
};

// The update or its memory traffic on `count` parameters.
template <typename P, typename S>
void run_kernel(Kernel kernel, const rmsprop_ext::ParamBuffers<P, S>* items, std::size_t count,
                const rmsprop_ext::Hyperparams& hp, int threads) {
  if (kernel == Kernel::kStep) {
    rmsprop_ext::step(items, count, hp, threads);
  } else {
    rmsprop_ext::roofline_step(items, count, hp, threads);
  }
}

// One parameter of P with state S, plain or with momentum and centering.
template <typename P, typename S>
class Buffers final : public Form {
 public:
  Buffers(std::int64_t n, rmsprop_ext::Hyperparams hp)
      : hp_(hp),
        param_(static_cast<std::size_t>(n)),
        grad_(static_cast<std::size_t>(n)),
        square_avg_(static_cast<std::size_t>(n)),
        momentum_(static_cast<std::size_t>(n)),
        grad_avg_(static_cast<std::size_t>(n)),
        compensation_(static_cast<std::size_t>(n)),
        exponents_(static_cast<std::size_t>(3 * (n / rmsprop_ext::kQuantBlock + 1))) {
    std::mt19937 generator(1);
    std::uniform_real_distribution<double> values(0.5, 2.0);
    for (std::int64_t i = 0; i < n; ++i) {
      param_.data[i] = from_double<P>(values(generator));
      grad_.data[i] = from_double<P>(values(generator));
      square_avg_.data[i] = from_double<S>(values(generator));
    }
    b_.param = param_.data;
    b_.grad = grad_.data;
    b_.square_avg = square_avg_.data;
    b_.momentum_buffer = hp.momentum > 0 ? momentum_.data : nullptr;
    b_.grad_avg = hp.centered ? grad_avg_.data : nullptr;
    b_.compensation = hp.compensation == Compensation::kKahan ? compensation_.data : nullptr;
    if constexpr (std::is_same_v<S, code8>) {
      const std::int64_t blocks = n / rmsprop_ext::kQuantBlock + 1;
      b_.square_avg_exponents = exponents_.data;
      b_.momentum_buffer_exponents = hp.momentum > 0 ? exponents_.data + blocks : nullptr;
      b_.grad_avg_exponents = hp.centered ? exponents_.data + 2 * blocks : nullptr;
    }
    b_.size = n;
  }

  void run(Kernel kernel, int threads) override {
    b_.step += 1;  // the stochastic rounding's counter moves on, as in training
    run_kernel(kernel, &b_, 1, hp_, threads);
  }

  const rmsprop_ext::ParamBuffers<P, S>& buffers() const { return b_; }

 private:
  rmsprop_ext::Hyperparams hp_;
  rmsprop_ext::ParamBuffers<P, S> b_;
  Buffer<P> param_, grad_;
  Buffer<S> square_avg_, momentum_, grad_avg_;
  Buffer<P> compensation_;
  Buffer<std::int8_t> exponents_;
};

using MakeForm = std::unique_ptr<Form> (*)(std::int64_t, const rmsprop_ext::Hyperparams&);
using MakeInCache = std::unique_ptr<Form> (*)(std::int64_t, int, std::int64_t,
                                              const rmsprop_ext::Hyperparams&);

struct FormSpec {
  const char* name;
  MakeForm make;
  MakeInCache make_in_cache;
  Compensation compensation = Compensation::kNone;
  bool round_each_op = false;
  bool momentum_centered = false;
  // float32's square root: MKL's code paths cost arithmetic the IEEE root does not.
  rmsprop_ext::SquareRoot root = rmsprop_ext::SquareRoot::kIeee;
};

// The compute limit of a form: one call of `threads` threads over n elements, as the full-size
// step, where each thread's share is its own small buffers listed over and over (step() splits the
// list's elements evenly and in order, so thread t gets exactly the copies of buffers t).
template <typename P, typename S>
class InCacheCopies final : public Form {
 public:
  InCacheCopies(std::int64_t n, int threads, std::int64_t per_thread,
                const rmsprop_ext::Hyperparams& hp)
      : hp_(hp) {
    const std::int64_t copies = n / (per_thread * threads);
    for (int t = 0; t < threads; ++t) {
      owners_.push_back(std::make_unique<Buffers<P, S>>(per_thread, hp));
      items_.insert(items_.end(), static_cast<std::size_t>(copies), owners_.back()->buffers());
    }
  }

  void run(Kernel kernel, int threads) override {
    for (auto& item : items_) {
      item.step += 1;
    }
    run_kernel(kernel, items_.data(), items_.size(), hp_, threads);
  }

 private:
  rmsprop_ext::Hyperparams hp_;
  std::vector<std::unique_ptr<Buffers<P, S>>> owners_;
  std::vector<rmsprop_ext::ParamBuffers<P, S>> items_;
};

template <typename P, typename S>
std::unique_ptr<Form> make(std::int64_t n, const rmsprop_ext::Hyperparams& hp) {
  return std::make_unique<Buffers<P, S>>(n, hp);
}

template <typename P, typename S>
std::unique_ptr<Form> make_in_cache(std::int64_t n, int threads, std::int64_t per_thread,
                                    const rmsprop_ext::Hyperparams& hp) {
  return std::make_unique<InCacheCopies<P, S>>(n, threads, per_thread, hp);
}

const FormSpec kForms[] = {
    {"fp32/fp32", make<float, float>, make_in_cache<float, float>},
    {"bf16/bf16 torch", make<bfloat16, bfloat16>, make_in_cache<bfloat16, bfloat16>,
     Compensation::kNone, true},
    {"bf16/bf16 once", make<bfloat16, bfloat16>, make_in_cache<bfloat16, bfloat16>},
    {"bf16/bf16 Kahan", make<bfloat16, bfloat16>, make_in_cache<bfloat16, bfloat16>,
     Compensation::kKahan},
    {"bf16/bf16 SR", make<bfloat16, bfloat16>, make_in_cache<bfloat16, bfloat16>,
     Compensation::kStochastic},
    {"bf16/fp32", make<bfloat16, float>, make_in_cache<bfloat16, float>},
    {"fp16/fp16 torch", make<float16, float16>, make_in_cache<float16, float16>,
     Compensation::kNone, true},
    {"fp16/fp16 SR", make<float16, float16>, make_in_cache<float16, float16>,
     Compensation::kStochastic},
    {"fp32/bf16", make<float, bfloat16>, make_in_cache<float, bfloat16>},
    {"bf16/8bit SR", make<bfloat16, code8>, make_in_cache<bfloat16, code8>,
     Compensation::kStochastic},
    {"bf16/8bit", make<bfloat16, code8>, make_in_cache<bfloat16, code8>},
    {"fp32/8bit", make<float, code8>, make_in_cache<float, code8>},
    {"bf16/bf16 torch m+c", make<bfloat16, bfloat16>, make_in_cache<bfloat16, bfloat16>,
     Compensation::kNone, true, true},
    {"fp32/fp32 m+c", make<float, float>, make_in_cache<float, float>, Compensation::kNone, false,
     true},
    {"fp32/fp32 mkl_avx512", make<float, float>, make_in_cache<float, float>, Compensation::kNone,
     false, false, rmsprop_ext::SquareRoot::kMklAvx512},
    {"fp32/fp32 mkl_avx2", make<float, float>, make_in_cache<float, float>, Compensation::kNone,
     false, false, rmsprop_ext::SquareRoot::kMklAvx2},
    {"fp32/fp32 mkl_sse42", make<float, float>, make_in_cache<float, float>, Compensation::kNone,
     false, false, rmsprop_ext::SquareRoot::kMklSse42},
};

// Whether `isa`'s kernel runs the form (the MKL square roots are in the avx2 and avx512 kernels).
bool runs(rmsprop_ext::Isa isa, const FormSpec& form) {
  return rmsprop_ext::computes_square_root<float>(isa, form.root);
}

rmsprop_ext::Hyperparams hyperparams(const FormSpec& form) {
  rmsprop_ext::Hyperparams hp;
  hp.lr = 1e-6;  // small steps: the values stay where they started over many repetitions
  hp.compensation = form.compensation;
  hp.round_each_op = form.round_each_op;
  hp.square_root_f32 = form.root;
  if (form.momentum_centered) {
    hp.momentum = 0.9;
    hp.centered = true;
  }
  return hp;
}

// The square root and divide alone, float32, with the active kernel.
struct SqrtDivide {
  Buffer<float> numerator, radicand, out;
  std::int64_t n;
  explicit SqrtDivide(std::int64_t size)
      : numerator(static_cast<std::size_t>(size)),
        radicand(static_cast<std::size_t>(size)),
        out(static_cast<std::size_t>(size)),
        n(size) {
    for (std::int64_t i = 0; i < n; ++i) {
      numerator.data[i] = 1.0f + static_cast<float>(i % 7);
      radicand.data[i] = 0.5f + static_cast<float>(i % 5);
    }
  }
  void run() { rmsprop_ext::sqrt_divide(n, numerator.data, radicand.data, out.data); }
};

using speed_table::cell;
using speed_table::per_round;
using speed_table::time_per_element;

constexpr int kSqrtDivide = -1;  // the form index of the limit's case

// Elements of each thread's own buffers in a compute-limit case: in L1/L2 for every form.
constexpr std::int64_t kInCachePerThread = 16384;

// The "limit" mode (see the top of the file): every form on one instruction set at n elements
// with `threads` threads, against its roofline and its compute limit.
int compute_limit_table(int rounds, std::int64_t n, int threads, rmsprop_ext::Isa isa) {
  const std::int64_t share = kInCachePerThread * threads;
  if (n < share || n % share != 0) {
    std::fprintf(stderr, "elements must be a multiple of %lld (16384 per thread)\n",
                 static_cast<long long>(share));
    return 2;
  }
  rmsprop_ext::set_active_isa(isa);
  enum Case { kStepCase, kRooflineCase, kLimitCase };
  const int form_count = static_cast<int>(sizeof kForms / sizeof kForms[0]);
  std::vector<std::unique_ptr<Form>> full, in_cache;
  std::vector<std::pair<int, Case>> cases;
  for (int f = 0; f < form_count; ++f) {
    const rmsprop_ext::Hyperparams hp = hyperparams(kForms[f]);
    if (!runs(isa, kForms[f])) {
      full.emplace_back();
      in_cache.emplace_back();
      continue;
    }
    full.push_back(kForms[f].make(n, hp));
    in_cache.push_back(kForms[f].make_in_cache(n, threads, kInCachePerThread, hp));
    for (Case c : {kStepCase, kRooflineCase, kLimitCase}) {
      cases.emplace_back(f, c);
    }
  }
  std::map<std::pair<int, Case>, std::vector<double>> times;
  std::mt19937 shuffler(7);
  for (int round = 0; round < rounds; ++round) {
    std::shuffle(cases.begin(), cases.end(), shuffler);
    for (const auto& key : cases) {
      const auto [f, c] = key;
      const auto index = static_cast<std::size_t>(f);
      Form& form = c == kLimitCase ? *in_cache[index] : *full[index];
      const Kernel kernel = c == kRooflineCase ? Kernel::kRoofline : Kernel::kStep;
      times[key].push_back(time_per_element(n, [&] { form.run(kernel, threads); }));
    }
  }
  std::printf(
      "%d rounds, %d threads, %lld elements, %s kernel; ns/element median [min-max]; compute "
      "limit = the same step with each thread on its own %lld elements in cache; ratios per "
      "round\n",
      rounds, threads, static_cast<long long>(n), rmsprop_ext::isa_name(isa),
      static_cast<long long>(kInCachePerThread));
  std::printf("%-20s %-22s %-22s %-22s %-20s %-20s %-20s\n", "form", "step", "roofline",
              "compute limit", "of roofline", "of compute limit", "limit / roofline");
  for (int f = 0; f < form_count; ++f) {
    if (!runs(isa, kForms[f])) {
      continue;
    }
    const auto& step = times[{f, kStepCase}];
    const auto& traffic = times[{f, kRooflineCase}];
    const auto& limit = times[{f, kLimitCase}];
    // limit / roofline: the roofline's time over the compute limit's; below 1, the arithmetic
    // alone is slower than moving the form's bytes.
    std::printf("%-20s %-22s %-22s %-22s %-20s %-20s %-20s\n", kForms[f].name,
                cell(step, "%.3f [%.3f-%.3f]").c_str(), cell(traffic, "%.3f [%.3f-%.3f]").c_str(),
                cell(limit, "%.3f [%.3f-%.3f]").c_str(),
                cell(per_round(traffic, step), "%.2f [%.2f-%.2f]").c_str(),
                cell(per_round(limit, step), "%.2f [%.2f-%.2f]").c_str(),
                cell(per_round(traffic, limit), "%.2f [%.2f-%.2f]").c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "limit") {
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 11;
    const std::int64_t n = argc > 3 ? std::atoll(argv[3]) : std::int64_t{1} << 24;
    const int threads = argc > 4 ? std::atoi(argv[4]) : 2;
    const rmsprop_ext::Isa isa =
        argc > 5 ? rmsprop_ext::parse_isa(argv[5]) : rmsprop_ext::available_isas().back();
    return compute_limit_table(rounds, n, threads, isa);
  }
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 11;
  const std::int64_t n = argc > 2 ? std::atoll(argv[2]) : 16384;
  const int form_count = static_cast<int>(sizeof kForms / sizeof kForms[0]);
  if (argc > 4) {
    for (int f = 0; f < form_count; ++f) {
      if (kForms[f].name == std::string(argv[4])) {
        rmsprop_ext::set_active_isa(rmsprop_ext::parse_isa(argv[3]));
        if (!runs(rmsprop_ext::active_isa(), kForms[f])) {
          std::fprintf(stderr, "the %s kernel does not run '%s'\n", argv[3], argv[4]);
          return 2;
        }
        const auto form = kForms[f].make(n, hyperparams(kForms[f]));
        const double ns = time_per_element(n, [&] {
          for (int r = 0; r < rounds * 1000; ++r) {
            form->run(Kernel::kStep, 1);
          }
        });
        std::printf("%s %s: %.3f ns/element\n", argv[3], argv[4], ns / (rounds * 1000));
        return 0;
      }
    }
    std::fprintf(stderr, "no form named '%s'\n", argv[4]);
    return 2;
  }
  using Key = std::tuple<rmsprop_ext::Isa, int, Kernel>;  // form index or kSqrtDivide
  std::vector<Key> cases;
  std::map<std::pair<rmsprop_ext::Isa, int>, std::unique_ptr<Form>> forms;
  std::map<rmsprop_ext::Isa, std::unique_ptr<SqrtDivide>> limits;
  for (rmsprop_ext::Isa isa : rmsprop_ext::available_isas()) {
    for (int f = 0; f < form_count; ++f) {
      if (!runs(isa, kForms[f])) {
        continue;
      }
      forms[{isa, f}] = kForms[f].make(n, hyperparams(kForms[f]));
      cases.emplace_back(isa, f, Kernel::kStep);
      cases.emplace_back(isa, f, Kernel::kRoofline);
    }
    limits[isa] = std::make_unique<SqrtDivide>(n);
    cases.emplace_back(isa, kSqrtDivide, Kernel::kStep);
  }
  std::map<Key, std::vector<double>> times;
  std::mt19937 shuffler(7);
  for (int round = 0; round < rounds; ++round) {
    std::shuffle(cases.begin(), cases.end(), shuffler);
    for (const Key& key : cases) {
      const auto [isa, f, kernel] = key;
      rmsprop_ext::set_active_isa(isa);
      times[key].push_back(f == kSqrtDivide ? time_per_element(n, [&] { limits[isa]->run(); })
                                            : time_per_element(n, [&, f = f, kernel = kernel] {
                                                forms[{isa, f}]->run(kernel, 1);
                                              }));
    }
  }
  std::printf(
      "%d rounds, one thread, %lld elements; ns/element median [min-max]; 'of limit' = the "
      "limit's time / the step's time, per round (1 = at the limit)\n",
      rounds, static_cast<long long>(n));
  std::printf("%-7s %-20s %-22s %-22s %-22s %-20s %-20s\n", "isa", "form", "step", "sqrt+div",
              "roofline", "of sqrt+div limit", "of roofline");
  for (rmsprop_ext::Isa isa : rmsprop_ext::available_isas()) {
    const auto& limit = times[{isa, kSqrtDivide, Kernel::kStep}];
    for (int f = 0; f < form_count; ++f) {
      if (!runs(isa, kForms[f])) {
        continue;
      }
      const auto& step = times[{isa, f, Kernel::kStep}];
      const auto& traffic = times[{isa, f, Kernel::kRoofline}];
      std::printf("%-7s %-20s %-22s %-22s %-22s %-20s %-20s\n", rmsprop_ext::isa_name(isa),
                  kForms[f].name, cell(step, "%.3f [%.3f-%.3f]").c_str(),
                  cell(limit, "%.3f [%.3f-%.3f]").c_str(),
                  cell(traffic, "%.3f [%.3f-%.3f]").c_str(),
                  cell(per_round(limit, step), "%.2f [%.2f-%.2f]").c_str(),
                  cell(per_round(traffic, step), "%.2f [%.2f-%.2f]").c_str());
    }
  }
  return 0;
}
