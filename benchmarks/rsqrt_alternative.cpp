// What an IEEE-operations-only alternative to the square root and divide would give the storage
// forms that are not tied to torch's bits: g / (sqrt(v) + eps) from an integer estimate of
// 1 / sqrt(v) refined by Newton steps (multiplies and FMAs only, so the same bits on every CPU
// with FMA), then 1 / (s + eps) the same way, against the CPU's square root and divide. In cache,
// one thread, 8 float32 lanes (AVX2 + FMA); prints ns/element of each and the alternative's
// largest relative error against the float64 quotient over the inputs.
//
//   cmake -S . -B build/core -DRMSPROP_CORE_ONLY=ON -DRMSPROP_CORE_TESTS=ON
//   cmake --build build/core --target rmsprop_rsqrt_alternative &&
//   build/core/rmsprop_rsqrt_alternative
//
// Zero, subnormal and infinite v would need their own lanes (v = 0 gives s = 0 * inf here); the
// inputs are the positive normal range a square average lives in.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

__m256 ieee(__m256 g, __m256 v, __m256 eps) {
  return _mm256_div_ps(g, _mm256_add_ps(_mm256_sqrt_ps(v), eps));
}

// 1 / sqrt(v): the integer estimate 0x5F375A86 - bits / 2, then three Newton steps
// y' = y * (3/2 - v/2 * y * y).
__m256 reciprocal_sqrt(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  __m256 y = _mm256_castsi256_ps(
      _mm256_sub_epi32(_mm256_set1_epi32(0x5F375A86), _mm256_srli_epi32(bits, 1)));
  const __m256 half_v = _mm256_mul_ps(v, _mm256_set1_ps(0.5f));
  const __m256 three_halves = _mm256_set1_ps(1.5f);
  for (int k = 0; k < 3; ++k) {
    y = _mm256_mul_ps(y, _mm256_fnmadd_ps(_mm256_mul_ps(half_v, y), y, three_halves));
  }
  return y;
}

// 1 / d: the integer estimate 0x7EF311C3 - bits, then three Newton steps y' = y * (2 - d * y),
// written y + y * (1 - d * y).
__m256 reciprocal(__m256 d) {
  __m256 y =
      _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_set1_epi32(0x7EF311C3), _mm256_castps_si256(d)));
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int k = 0; k < 3; ++k) {
    y = _mm256_fmadd_ps(y, _mm256_fnmadd_ps(d, y, one), y);
  }
  return y;
}

__m256 alternative(__m256 g, __m256 v, __m256 eps) {
  const __m256 s = _mm256_mul_ps(v, reciprocal_sqrt(v));
  return _mm256_mul_ps(g, reciprocal(_mm256_add_ps(s, eps)));
}

template <typename F>
double ns_per_element(const std::vector<float>& g, const std::vector<float>& v,
                      std::vector<float>& out, F f) {
  const __m256 eps = _mm256_set1_ps(1e-8f);
  const auto run = [&] {
    for (std::size_t i = 0; i < g.size(); i += 8) {
      _mm256_storeu_ps(&out[i], f(_mm256_loadu_ps(&g[i]), _mm256_loadu_ps(&v[i]), eps));
    }
  };
  run();
  std::vector<double> rounds;
  for (int r = 0; r < 11; ++r) {
    int repetitions = 0;
    const auto start = std::chrono::steady_clock::now();
    auto now = start;
    do {
      run();
      ++repetitions;
      now = std::chrono::steady_clock::now();
    } while (now - start < std::chrono::milliseconds(5));
    rounds.push_back(std::chrono::duration<double, std::nano>(now - start).count() / repetitions /
                     static_cast<double>(g.size()));
  }
  std::sort(rounds.begin(), rounds.end());
  return rounds[rounds.size() / 2];
}

}  // namespace

int main() {
  constexpr std::size_t kN = 16384;
  std::mt19937 generator(3);
  std::uniform_real_distribution<double> exponent(-40.0, 10.0);
  std::normal_distribution<float> normal;
  std::vector<float> g(kN), v(kN), out(kN);
  for (std::size_t i = 0; i < kN; ++i) {
    g[i] = normal(generator);
    v[i] = static_cast<float>(std::exp2(exponent(generator)));
  }
  const double t_ieee = ns_per_element(g, v, out, ieee);
  const double t_alternative = ns_per_element(g, v, out, alternative);
  double worst = 0.0;
  for (std::size_t i = 0; i < kN; ++i) {
    const double exact = static_cast<double>(g[i]) / (std::sqrt(static_cast<double>(v[i])) + 1e-8);
    if (exact != 0.0) {
      worst = std::max(worst, std::abs((out[i] - exact) / exact));
    }
  }
  std::printf("sqrt + divide: %.3f ns/element; IEEE-only alternative: %.3f ns/element (%.2fx)\n",
              t_ieee, t_alternative, t_ieee / t_alternative);
  std::printf("alternative's largest relative error against float64: %.3g (%.2f float32 ulps)\n",
              worst, worst / 0x1p-24);
  return 0;
}
