// In-cache speed of the update on each instruction set, against what limits it there: the IEEE
// square root and divide it takes once per element (rmsprop_ext::sqrt_divide, the same vectors
// doing only that) and the memory traffic (roofline_step). One thread; float32 and float64. Then
// what following torch's square root costs: the fused step with each of MKL's square roots that
// the kernel computes itself, against the same step with the IEEE one.
//
//   cmake -S . -B build/core -DRMSPROP_CORE_ONLY=ON -DRMSPROP_CORE_TESTS=ON
//   cmake --build build/core && build/core/rmsprop_core_speed [rounds]
//
// Every (instruction set, dtype, size, kernel) case runs once per round, the cases of a round in a
// fresh random order; each run repeats the kernel until about 2 ms have passed and records
// nanoseconds per element. Reported: medians over the rounds with [min-max], and the update's
// throughput as a fraction of the limit's, computed round by round (median [min-max]).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/isa.h"
#include "core/rmsprop.h"

namespace {

using Clock = std::chrono::steady_clock;

// 64-byte aligned storage, as torch allocates.
template <typename T>
struct Buffer {
  T* data = nullptr;
  explicit Buffer(std::size_t n, T value) {
    const std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    data = static_cast<T*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
    std::fill(data, data + n, value);
  }
  ~Buffer() { std::free(data); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// The update with multiply-adds rounded once (torch's AVX2/AVX-512 kernels) or twice (torch's
// DEFAULT kernels, what a CPU without AVX2 gets), then the two limits, then the fused update with
// MKL's square roots.
enum class Kernel {
  kStepFused,
  kStepSeparate,
  kSqrtDivide,
  kRoofline,
  kMklAvx512,
  kMklAvx2,
  kMklSse42,
  kMklPortable
};

constexpr std::pair<Kernel, rmsprop_ext::SquareRoot> kMklForms[] = {
    {Kernel::kMklAvx512, rmsprop_ext::SquareRoot::kMklAvx512},
    {Kernel::kMklAvx2, rmsprop_ext::SquareRoot::kMklAvx2},
    {Kernel::kMklSse42, rmsprop_ext::SquareRoot::kMklSse42},
    {Kernel::kMklPortable, rmsprop_ext::SquareRoot::kMklPortable},
};

const char* form_name(Kernel kernel) {
  switch (kernel) {
    case Kernel::kMklAvx512:
      return "mkl_avx512";
    case Kernel::kMklAvx2:
      return "mkl_avx2";
    case Kernel::kMklSse42:
      return "mkl_sse42";
    case Kernel::kMklPortable:
      return "mkl_portable";
    default:
      return "ieee";
  }
}

// The hyperparameters with `form` as T's square root.
template <typename T>
void set_square_root(rmsprop_ext::Hyperparams& hp, rmsprop_ext::SquareRoot form) {
  (sizeof(T) == sizeof(float) ? hp.square_root_f32 : hp.square_root_f64) = form;
}

// Whether the active kernel computes `form` for T itself (no outside function is given here, so
// a step with a form it lacks is refused).
template <typename T>
bool computes(rmsprop_ext::SquareRoot form) {
  rmsprop_ext::Hyperparams hp;
  set_square_root<T>(hp, form);
  return rmsprop_ext::check_hyperparams(hp).empty();
}

template <typename T>
struct Workspace {
  std::int64_t n;
  Buffer<T> param, grad, square_avg, out;
  explicit Workspace(std::int64_t size)
      : n(size),
        param(static_cast<std::size_t>(size), T(1)),
        grad(static_cast<std::size_t>(size), T(0.5)),
        square_avg(static_cast<std::size_t>(size), T(0.25)),
        out(static_cast<std::size_t>(size), T(0)) {
    std::mt19937 generator(1);
    std::uniform_real_distribution<double> values(0.5, 2.0);
    for (std::int64_t i = 0; i < n; ++i) {
      grad.data[i] = static_cast<T>(values(generator));
      square_avg.data[i] = static_cast<T>(values(generator));
    }
  }

  void run(Kernel kernel) {
    rmsprop_ext::Hyperparams hp;
    hp.lr = 1e-6;  // small steps: the values stay where they started over many repetitions
    hp.fused_multiply_add = kernel != Kernel::kStepSeparate;
    for (const auto& [mkl_kernel, form] : kMklForms) {
      if (kernel == mkl_kernel) {
        set_square_root<T>(hp, form);
      }
    }
    rmsprop_ext::ParamBuffers<T, T> b;
    b.param = param.data;
    b.grad = grad.data;
    b.square_avg = square_avg.data;
    b.size = n;
    switch (kernel) {
      case Kernel::kRoofline:
        rmsprop_ext::roofline_step(&b, 1, hp, 1);
        break;
      case Kernel::kSqrtDivide:
        rmsprop_ext::sqrt_divide(n, grad.data, square_avg.data, out.data);
        break;
      default:
        rmsprop_ext::step(&b, 1, hp, 1);
        break;
    }
  }

  // Nanoseconds per element of one run, from repetitions filling about 2 ms.
  double time(Kernel kernel) {
    run(kernel);  // warm: the buffers in cache, the code paged in
    int repetitions = 0;
    const auto start = Clock::now();
    auto now = start;
    do {
      run(kernel);
      ++repetitions;
      now = Clock::now();
    } while (now - start < std::chrono::milliseconds(2));
    const double ns = std::chrono::duration<double, std::nano>(now - start).count();
    return ns / repetitions / static_cast<double>(n);
  }
};

struct Summary {
  double median, low, high;
};

Summary summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

using Key = std::tuple<rmsprop_ext::Isa, int, std::int64_t, Kernel>;  // dtype 32 or 64

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 11;
  const std::vector<std::int64_t> sizes = {4096, 16384, 65536, 262144};
  const std::vector<Kernel> kernels = {Kernel::kStepFused, Kernel::kStepSeparate,
                                       Kernel::kSqrtDivide, Kernel::kRoofline};
  std::vector<Key> cases;
  for (rmsprop_ext::Isa isa : rmsprop_ext::available_isas()) {
    for (int bits : {32, 64}) {
      for (std::int64_t n : sizes) {
        for (Kernel k : kernels) {
          cases.emplace_back(isa, bits, n, k);
        }
        rmsprop_ext::set_active_isa(isa);
        for (const auto& [kernel, form] : kMklForms) {
          if (bits == 32 ? computes<float>(form) : computes<double>(form)) {
            cases.emplace_back(isa, bits, n, kernel);
          }
        }
      }
    }
  }
  std::map<std::int64_t, std::unique_ptr<Workspace<float>>> floats;
  std::map<std::int64_t, std::unique_ptr<Workspace<double>>> doubles;
  for (std::int64_t n : sizes) {
    floats[n] = std::make_unique<Workspace<float>>(n);
    doubles[n] = std::make_unique<Workspace<double>>(n);
  }
  std::map<Key, std::vector<double>> times;
  std::mt19937 shuffler(7);
  for (int round = 0; round < rounds; ++round) {
    std::shuffle(cases.begin(), cases.end(), shuffler);
    for (const Key& key : cases) {
      const auto [isa, bits, n, kernel] = key;
      rmsprop_ext::set_active_isa(isa);
      times[key].push_back(bits == 32 ? floats[n]->time(kernel) : doubles[n]->time(kernel));
    }
  }
  std::printf(
      "%d rounds, one thread; ns/element median [min-max]; fraction = limit's time / "
      "step's time, per round\n",
      rounds);
  std::printf("%-7s %-7s %8s %-9s %-22s %-22s %-22s %-20s %-20s\n", "isa", "dtype", "elements",
              "madd", "step", "sqrt+div", "roofline", "of sqrt+div limit", "of roofline");
  std::sort(cases.begin(), cases.end());
  for (const Key& key : cases) {
    const auto [isa, bits, n, kernel] = key;
    if (kernel != Kernel::kStepFused && kernel != Kernel::kStepSeparate) continue;
    const auto& step = times[key];
    const auto& limit = times[{isa, bits, n, Kernel::kSqrtDivide}];
    const auto& traffic = times[{isa, bits, n, Kernel::kRoofline}];
    std::vector<double> of_limit, of_traffic;
    for (std::size_t r = 0; r < step.size(); ++r) {
      of_limit.push_back(limit[r] / step[r]);
      of_traffic.push_back(traffic[r] / step[r]);
    }
    auto cell = [](const std::vector<double>& v, const char* format) {
      const Summary s = summarize(v);
      char text[64];
      std::snprintf(text, sizeof text, format, s.median, s.low, s.high);
      return std::string(text);
    };
    std::printf(
        "%-7s %-7s %8lld %-9s %-22s %-22s %-22s %-20s %-20s\n", rmsprop_ext::isa_name(isa),
        bits == 32 ? "float32" : "float64", static_cast<long long>(n),
        kernel == Kernel::kStepFused ? "fused" : "separate", cell(step, "%.3f [%.3f-%.3f]").c_str(),
        cell(limit, "%.3f [%.3f-%.3f]").c_str(), cell(traffic, "%.3f [%.3f-%.3f]").c_str(),
        cell(of_limit, "%.2f [%.2f-%.2f]").c_str(), cell(of_traffic, "%.2f [%.2f-%.2f]").c_str());
  }
  std::printf(
      "\ntorch's square root in the single pass: fused step with MKL's square root / with the IEEE "
      "one, time per round, median [min-max]\n");
  std::printf("%-7s %-7s %8s %-13s %-22s %-20s\n", "isa", "dtype", "elements", "square root",
              "step", "time / IEEE step");
  for (const Key& key : cases) {
    const auto [isa, bits, n, kernel] = key;
    if (kernel < Kernel::kMklAvx512) continue;
    const auto& step = times[key];
    const auto& ieee = times[{isa, bits, n, Kernel::kStepFused}];
    std::vector<double> ratio;
    for (std::size_t r = 0; r < step.size(); ++r) {
      ratio.push_back(step[r] / ieee[r]);
    }
    const Summary t = summarize(step), q = summarize(ratio);
    std::printf("%-7s %-7s %8lld %-13s %.3f [%.3f-%.3f]    %.3f [%.3f-%.3f]\n",
                rmsprop_ext::isa_name(isa), bits == 32 ? "float32" : "float64",
                static_cast<long long>(n), form_name(kernel), t.median, t.low, t.high, q.median,
                q.low, q.high);
  }
  return 0;
}
