// The float32 step in one pass and in two passes per block (the state's buffers, then the
// parameter's), on three placements of square_avg against the parameter, so that the loop a CPU
// gets by default can be checked on that CPU (kernel.cpp's two_pass_blocks: two passes on AMD's
// Zen cores, whose L1 data cache picks a line's way by a hash of address bits 12-27).
//
//   cmake -S . -B build/core -DRMSPROP_CORE_ONLY=ON -DRMSPROP_CORE_TESTS=ON
//   cmake --build build/core
//   build/core/rmsprop_two_pass_layouts [isa] [ieee|mkl_sse42|mkl_avx2] [elements] [plain|m+c]
//
// The buffers are carved from one mapping, the parameter where bits 12-27 of its address are
// clear; square_avg starts 2^26 + 2^12 bytes after it ("apart": other hashes on every page),
// 2^26 + 2^13 ("collide": the hash XORs bits 13 and 26, so the two share it on the pages where
// adding the distance carries no bit) or 2^28 ("all": the same hash on every page). The gradient,
// momentum buffer and grad_avg lie elsewhere. Each (loop, layout) case runs 10 steps per round
// (2,000 below 1M elements), 2 threads, the cases of a round in a fresh random order; printed:
// median nanoseconds per element over 11 rounds.
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/isa.h"
#include "core/rmsprop.h"
#include "root_names.h"

namespace {

using rmsprop_ext::SplitWrites;

constexpr int kRounds = 11;

struct Layout {
  const char* name;
  std::uintptr_t square_avg_offset;
};

constexpr Layout kLayouts[] = {{"apart", (std::uintptr_t{1} << 26) + (std::uintptr_t{1} << 12)},
                               {"collide", (std::uintptr_t{1} << 26) + (std::uintptr_t{1} << 13)},
                               {"all", std::uintptr_t{1} << 28}};

struct Loop {
  const char* name;
  SplitWrites mode;
};

constexpr Loop kLoops[] = {{"one pass", SplitWrites::kNever}, {"two passes", SplitWrites::kAlways}};

float* filled(std::uintptr_t address, std::int64_t n, float value) {
  auto* p = reinterpret_cast<float*>(address);
  std::fill(p, p + n, value);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string isa = argc > 1 ? argv[1] : "avx2";
  const std::string root = argc > 2 ? argv[2] : "ieee";
  const std::int64_t n = argc > 3 ? std::atol(argv[3]) : std::int64_t{1} << 22;
  const bool momentum_centered = argc > 4 && std::string(argv[4]) == "m+c";
  rmsprop_ext::set_active_isa(rmsprop_ext::parse_isa(isa));
  rmsprop_ext::Hyperparams hp;
  hp.lr = 1e-12;  // the values barely move, so every round times the same arithmetic
  hp.square_root_f32 = parse_root(root);
  if (momentum_centered) {
    hp.momentum = 0.9;
    hp.centered = true;
  }
  const std::string problem = rmsprop_ext::check_hyperparams(hp);
  if (!problem.empty()) {
    std::fprintf(stderr, "%s\n", problem.c_str());
    return 2;
  }

  constexpr std::size_t kSpan = std::size_t{1} << 31;  // pages never touched cost nothing
  void* mapping = mmap(nullptr, kSpan, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapping == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  constexpr std::uintptr_t kAligned = std::uintptr_t{1} << 28;
  const std::uintptr_t base =
      (reinterpret_cast<std::uintptr_t>(mapping) + kAligned - 1) & ~(kAligned - 1);
  rmsprop_ext::ParamBuffers<float, float> buffers;
  buffers.param = filled(base, n, 1.0f);
  buffers.grad = filled(base + (std::uintptr_t{1} << 27) + 192, n, 0.5f);
  buffers.size = n;
  if (momentum_centered) {
    buffers.momentum_buffer = filled(base + (std::uintptr_t{1} << 29) + 5 * 4096, n, 0.0f);
    buffers.grad_avg = filled(base + (std::uintptr_t{1} << 30) + 9 * 4096, n, 0.0f);
  }
  std::vector<float*> square_avgs;
  for (const Layout& layout : kLayouts) {
    square_avgs.push_back(filled(base + layout.square_avg_offset, n, 1.0f));
  }

  const int steps = n < (std::int64_t{1} << 20) ? 2000 : 10;
  constexpr std::size_t kLayoutCount = std::size(kLayouts);
  constexpr std::size_t kCases = std::size(kLoops) * kLayoutCount;
  std::vector<std::vector<double>> times(kCases);
  std::vector<std::size_t> order(kCases);
  for (std::size_t c = 0; c < kCases; ++c) {
    order[c] = c;
  }
  std::mt19937 generator(1);
  for (int round = 0; round < kRounds; ++round) {
    std::shuffle(order.begin(), order.end(), generator);
    for (const std::size_t c : order) {
      rmsprop_ext::set_split_writes(kLoops[c / kLayoutCount].mode);
      buffers.square_avg = square_avgs[c % kLayoutCount];
      rmsprop_ext::step(&buffers, 1, hp, 2);
      const auto start = std::chrono::steady_clock::now();
      for (int s = 0; s < steps; ++s) {
        rmsprop_ext::step(&buffers, 1, hp, 2);
      }
      const std::chrono::duration<double, std::nano> elapsed =
          std::chrono::steady_clock::now() - start;
      times[c].push_back(elapsed.count() / steps / static_cast<double>(n));
    }
  }
  rmsprop_ext::set_split_writes(SplitWrites::kAuto);

  std::printf("%lld elements, %s kernel, %s root, %s, 2 threads; ns/element, median of %d rounds\n",
              static_cast<long long>(n), isa.c_str(), root.c_str(),
              momentum_centered ? "momentum+centered" : "plain", kRounds);
  std::printf("%-12s", "");
  for (const Layout& layout : kLayouts) {
    std::printf(" %9s", layout.name);
  }
  std::printf("\n");
  for (std::size_t loop = 0; loop < std::size(kLoops); ++loop) {
    std::printf("%-12s", kLoops[loop].name);
    for (std::size_t layout = 0; layout < kLayoutCount; ++layout) {
      std::vector<double> t = times[loop * kLayoutCount + layout];
      std::sort(t.begin(), t.end());
      std::printf(" %9.3f", t[t.size() / 2]);
    }
    std::printf("\n");
  }
  munmap(mapping, kSpan);
  return 0;
}
