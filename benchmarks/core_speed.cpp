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
#include "speed_table.h"

namespace {

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
// DEFAULT kernels, what a CPU without AVX2 gets), then its two limits.
enum class Kernel { kStepFused, kStepSeparate, kSqrtDivide, kRoofline };

using rmsprop_ext::SquareRoot;

// The square roots timed: the IEEE one, and MKL's that the kernels compute (torch's on each of
// MKL's code paths), each with its own limit (sqrt_divide with that square root).
constexpr std::pair<SquareRoot, const char*> kRoots[] = {
    {SquareRoot::kIeee, "ieee"},
    {SquareRoot::kMklAvx512, "mkl_avx512"},
    {SquareRoot::kMklAvx2, "mkl_avx2"},
    {SquareRoot::kMklSse42, "mkl_sse42"},
    {SquareRoot::kMklPortable, "mkl_portable"},
};

const char* root_name(SquareRoot root) {
  for (const auto& [form, name] : kRoots) {
    if (form == root) {
      return name;
    }
  }
  return "?";
}

// The hyperparameters with `root` as T's square root.
template <typename T>
void set_square_root(rmsprop_ext::Hyperparams& hp, SquareRoot root) {
  (sizeof(T) == sizeof(float) ? hp.square_root_f32 : hp.square_root_f64) = root;
}

// Whether the active kernel computes `root` for T itself (no outside function is given here, so
// a step with a form it lacks is refused).
template <typename T>
bool computes(SquareRoot root) {
  rmsprop_ext::Hyperparams hp;
  set_square_root<T>(hp, root);
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

  void run(Kernel kernel, SquareRoot root) {
    rmsprop_ext::Hyperparams hp;
    hp.lr = 1e-6;  // small steps: the values stay where they started over many repetitions
    hp.fused_multiply_add = kernel != Kernel::kStepSeparate;
    set_square_root<T>(hp, root);
    rmsprop_ext::ParamBuffers<T, T> b;
    b.param = param.data;
    b.grad = grad.data;
    b.square_avg = square_avg.data;
    b.size = n;
    switch (kernel) {
      case Kernel::kStepFused:
      case Kernel::kStepSeparate:
        rmsprop_ext::step(&b, 1, hp, 1);
        break;
      case Kernel::kRoofline:
        rmsprop_ext::roofline_step(&b, 1, hp, 1);
        break;
      case Kernel::kSqrtDivide:
        rmsprop_ext::sqrt_divide(n, grad.data, square_avg.data, out.data, root);
        break;
    }
  }

  // Nanoseconds per element of one run.
  double time(Kernel kernel, SquareRoot root) {
    return speed_table::time_per_element(n, [&] { run(kernel, root); });
  }
};

// (instruction set, dtype bits 32 or 64, elements, kernel, square root)
using Key = std::tuple<rmsprop_ext::Isa, int, std::int64_t, Kernel, SquareRoot>;

using speed_table::cell;
using speed_table::per_round;

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 11;
  const std::vector<std::int64_t> sizes = {4096, 16384, 65536, 262144};
  std::vector<Key> cases;
  for (rmsprop_ext::Isa isa : rmsprop_ext::available_isas()) {
    rmsprop_ext::set_active_isa(isa);
    for (int bits : {32, 64}) {
      for (std::int64_t n : sizes) {
        for (Kernel k :
             {Kernel::kStepFused, Kernel::kStepSeparate, Kernel::kSqrtDivide, Kernel::kRoofline}) {
          cases.emplace_back(isa, bits, n, k, SquareRoot::kIeee);
        }
        for (const auto& [root, name] : kRoots) {
          if (root != SquareRoot::kIeee &&
              (bits == 32 ? computes<float>(root) : computes<double>(root))) {
            cases.emplace_back(isa, bits, n, Kernel::kStepFused, root);
            cases.emplace_back(isa, bits, n, Kernel::kSqrtDivide, root);
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
      const auto [isa, bits, n, kernel, root] = key;
      rmsprop_ext::set_active_isa(isa);
      times[key].push_back(bits == 32 ? floats[n]->time(kernel, root)
                                      : doubles[n]->time(kernel, root));
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
    const auto [isa, bits, n, kernel, root] = key;
    if ((kernel != Kernel::kStepFused && kernel != Kernel::kStepSeparate) ||
        root != SquareRoot::kIeee) {
      continue;
    }
    const auto& step = times[key];
    const auto& limit = times[{isa, bits, n, Kernel::kSqrtDivide, root}];
    const auto& traffic = times[{isa, bits, n, Kernel::kRoofline, root}];
    std::printf("%-7s %-7s %8lld %-9s %-22s %-22s %-22s %-20s %-20s\n", rmsprop_ext::isa_name(isa),
                bits == 32 ? "float32" : "float64", static_cast<long long>(n),
                kernel == Kernel::kStepFused ? "fused" : "separate",
                cell(step, "%.3f [%.3f-%.3f]").c_str(), cell(limit, "%.3f [%.3f-%.3f]").c_str(),
                cell(traffic, "%.3f [%.3f-%.3f]").c_str(),
                cell(per_round(limit, step), "%.2f [%.2f-%.2f]").c_str(),
                cell(per_round(traffic, step), "%.2f [%.2f-%.2f]").c_str());
  }
  std::printf(
      "\ntorch's square root in the single pass: the fused step with each of MKL's square roots "
      "the kernel computes; its time / the same step's with the IEEE root, and its limit (MKL's "
      "root + divide) / its time, per round\n");
  std::printf("%-7s %-7s %8s %-13s %-22s %-22s %-20s %-20s\n", "isa", "dtype", "elements",
              "square root", "step", "root+div", "step / IEEE step", "of root+div limit");
  for (const Key& key : cases) {
    const auto [isa, bits, n, kernel, root] = key;
    if (kernel != Kernel::kStepFused || root == SquareRoot::kIeee) {
      continue;
    }
    const auto& step = times[key];
    const auto& limit = times[{isa, bits, n, Kernel::kSqrtDivide, root}];
    const auto& ieee = times[{isa, bits, n, Kernel::kStepFused, SquareRoot::kIeee}];
    std::printf("%-7s %-7s %8lld %-13s %-22s %-22s %-20s %-20s\n", rmsprop_ext::isa_name(isa),
                bits == 32 ? "float32" : "float64", static_cast<long long>(n), root_name(root),
                cell(step, "%.3f [%.3f-%.3f]").c_str(), cell(limit, "%.3f [%.3f-%.3f]").c_str(),
                cell(per_round(step, ieee), "%.3f [%.3f-%.3f]").c_str(),
                cell(per_round(limit, step), "%.2f [%.2f-%.2f]").c_str());
  }
  return 0;
}
