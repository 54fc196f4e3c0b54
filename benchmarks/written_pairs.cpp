// The float32 centered step in its two loops beside a plain one-pass loop such as torch.compile's
// (inductor's C++: one vector of each buffer, update, store, next), on buffers laid out as torch
// lays out equal tensors allocated one after another: each its size plus 4 KiB below the one
// before, one cache line into its page. On AMD's Zen cores which lines of square_avg and grad_avg
// (both written in the first of the two passes) evict each other then depends on where the mapping
// lands (the carries of the addresses' bits 12-27), so the program prints the share of 1 KiB blocks
// where each written pair shares its set and utag (zen_l1.h's lines_evict_each_other) beside the
// times; run it several times for several mappings. "two passes, apart" keeps those pairs apart
// (with_written_pairs_apart in kernel.cpp) on any CPU; "CPU's default" is what the step does on
// this one: two passes with the pairs kept apart on Zen to Zen 4 cores, one pass elsewhere.
//
//   cmake -S . -B build/core -DRMSPROP_CORE_ONLY=ON -DRMSPROP_CORE_TESTS=ON
//   cmake --build build/core --target rmsprop_written_pairs
//   build/core/rmsprop_written_pairs [isa] [ieee|mkl_sse42|mkl_avx2] [elements] [rounds]
//
// Cases interleaved in a new order each round, 5 steps each, 2 threads; printed: median ms
// [range] and the median of the per-round ratios to the plain loop.
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/isa.h"
#include "core/rmsprop.h"
#include "core/zen_l1.h"
#include "root_names.h"

namespace {

using rmsprop_ext::SplitWrites;

struct Buffers {
  float* param;
  float* grad;
  float* square_avg;
  float* grad_avg;
  std::int64_t n;
};

// torch.optim.RMSprop's centered update (lr 1e-12, alpha 0.99, eps 1e-8) as inductor writes it
// for AVX2: IEEE square root, one pass, OpenMP's static split.
__attribute__((target("avx2,fma"))) void plain_loop(const Buffers& b) {
  const __m256 alpha = _mm256_set1_ps(0.99f);
  const __m256 one_minus_alpha = _mm256_set1_ps(0.01f);
  const __m256 eps = _mm256_set1_ps(1e-8f);
  const __m256 minus_lr = _mm256_set1_ps(-1e-12f);
#pragma omp parallel for schedule(static) num_threads(2)
  for (std::int64_t i = 0; i < b.n; i += 8) {
    const __m256 g = _mm256_loadu_ps(b.grad + i);
    const __m256 s = _mm256_fmadd_ps(_mm256_mul_ps(g, g), one_minus_alpha,
                                     _mm256_mul_ps(_mm256_loadu_ps(b.square_avg + i), alpha));
    const __m256 a0 = _mm256_loadu_ps(b.grad_avg + i);
    const __m256 a = _mm256_fmadd_ps(_mm256_sub_ps(g, a0), one_minus_alpha, a0);
    const __m256 d = _mm256_add_ps(_mm256_sqrt_ps(_mm256_fnmadd_ps(a, a, s)), eps);
    const __m256 p = _mm256_fmadd_ps(_mm256_div_ps(g, d), minus_lr, _mm256_loadu_ps(b.param + i));
    _mm256_storeu_ps(b.square_avg + i, s);
    _mm256_storeu_ps(b.grad_avg + i, a);
    _mm256_storeu_ps(b.param + i, p);
  }
}

double share_evicting(const float* x, const float* y, std::int64_t n) {
  std::int64_t hits = 0;
  std::int64_t blocks = 0;
  for (std::int64_t i = 0; i < n; i += 256, ++blocks) {
    hits += rmsprop_ext::lines_evict_each_other(x + i, y + i) ? 1 : 0;
  }
  return static_cast<double>(hits) / static_cast<double>(blocks);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const std::string isa = argc > 1 ? argv[1] : "avx2";
  const std::string root = argc > 2 ? argv[2] : "ieee";
  const std::int64_t n = argc > 3 ? std::atol(argv[3]) : std::int64_t{1} << 24;
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 15;
  if (n % 8 != 0 || n <= 0 || rounds <= 0) {
    std::fprintf(stderr, "elements must be a positive multiple of 8, rounds positive\n");
    return 2;
  }
  rmsprop_ext::set_active_isa(rmsprop_ext::parse_isa(isa));
  rmsprop_ext::Hyperparams hp;
  hp.lr = 1e-12;  // the values barely move, so every round times the same arithmetic
  hp.centered = true;
  hp.square_root_f32 = parse_root(root);
  const std::string problem = rmsprop_ext::check_hyperparams(hp);
  if (!problem.empty()) {
    std::fprintf(stderr, "%s\n", problem.c_str());
    return 2;
  }

  // One mapping for the four buffers, the parameter on top, each next one its size plus 4 KiB
  // lower, all one cache line into their pages.
  const auto gap = static_cast<std::uintptr_t>(n) * sizeof(float) + 4096;
  const std::size_t span = 4 * gap + 8192;
  void* mapping = mmap(nullptr, span, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapping == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  const std::uintptr_t top =
      ((reinterpret_cast<std::uintptr_t>(mapping) + 3 * gap + 4095) & ~std::uintptr_t{4095}) + 64;
  const Buffers b{reinterpret_cast<float*>(top), reinterpret_cast<float*>(top - gap),
                  reinterpret_cast<float*>(top - 2 * gap), reinterpret_cast<float*>(top - 3 * gap),
                  n};
  std::fill(b.param, b.param + n, 1.0f);
  std::fill(b.grad, b.grad + n, 0.5f);
  std::fill(b.square_avg, b.square_avg + n, 1.0f);
  std::fill(b.grad_avg, b.grad_avg + n, 0.0f);
  rmsprop_ext::ParamBuffers<float, float> buffers;
  buffers.param = b.param;
  buffers.grad = b.grad;
  buffers.square_avg = b.square_avg;
  buffers.grad_avg = b.grad_avg;
  buffers.size = n;

  const auto ours = [&](SplitWrites mode, bool roofline) {
    return [&buffers, &hp, mode, roofline] {
      rmsprop_ext::set_split_writes(mode);
      if (roofline) {
        rmsprop_ext::roofline_step(&buffers, 1, hp, 2);
      } else {
        rmsprop_ext::step(&buffers, 1, hp, 2);
      }
    };
  };
  const std::vector<std::pair<std::string, std::function<void()>>> cases = {
      {"plain one-pass loop", [&b] { plain_loop(b); }},
      {"step, two passes, apart", ours(SplitWrites::kAlways, false)},
      {"step, one pass", ours(SplitWrites::kNever, false)},
      {"step, CPU's default", ours(SplitWrites::kAuto, false)},
      {"roofline, 2 passes, apart", ours(SplitWrites::kAlways, true)},
      {"roofline, one pass", ours(SplitWrites::kNever, true)},
      {"roofline, CPU's default", ours(SplitWrites::kAuto, true)},
  };
  std::vector<std::vector<double>> times(cases.size());
  std::vector<std::size_t> order(cases.size());
  for (std::size_t c = 0; c < order.size(); ++c) {
    order[c] = c;
  }
  std::mt19937 generator(std::random_device{}());
  for (int round = 0; round < rounds; ++round) {
    std::shuffle(order.begin(), order.end(), generator);
    for (const std::size_t c : order) {
      cases[c].second();
      const auto start = std::chrono::steady_clock::now();
      for (int s = 0; s < 5; ++s) {
        cases[c].second();
      }
      const std::chrono::duration<double, std::milli> elapsed =
          std::chrono::steady_clock::now() - start;
      times[c].push_back(elapsed.count() / 5);
    }
  }
  rmsprop_ext::set_split_writes(SplitWrites::kAuto);

  std::printf("%lld float32, centered, %s kernel, %s root, 2 threads, %d rounds\n",
              static_cast<long long>(n), isa.c_str(), root.c_str(), rounds);
  std::printf(
      "1 KiB blocks whose lines evict each other: square_avg/grad_avg %.2f, "
      "param/grad_avg %.2f, param/square_avg %.2f\n",
      share_evicting(b.square_avg, b.grad_avg, n), share_evicting(b.param, b.grad_avg, n),
      share_evicting(b.param, b.square_avg, n));
  for (std::size_t c = 0; c < cases.size(); ++c) {
    std::vector<double> ratios;
    for (int round = 0; round < rounds; ++round) {
      ratios.push_back(times[0][static_cast<std::size_t>(round)] /
                       times[c][static_cast<std::size_t>(round)]);
    }
    const auto [low, high] = std::minmax_element(times[c].begin(), times[c].end());
    std::printf("  %-26s %7.2f ms [%.2f-%.2f]  %.2fx the plain loop's speed\n",
                cases[c].first.c_str(), median(times[c]), *low, *high, median(ratios));
  }
  munmap(mapping, span);
  return 0;
}
