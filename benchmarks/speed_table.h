// What the in-cache speed programs (core_speed.cpp, storage_speed.cpp) share: the timing of one
// case and the cells of their tables.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace speed_table {

// Nanoseconds per element of one call of f on n elements, from repetitions filling about 2 ms,
// after one untimed call (the buffers in cache, the code paged in).
template <typename F>
double time_per_element(std::int64_t n, F&& f) {
  using Clock = std::chrono::steady_clock;
  f();
  int repetitions = 0;
  const auto start = Clock::now();
  auto now = start;
  do {
    f();
    ++repetitions;
    now = Clock::now();
  } while (now - start < std::chrono::milliseconds(2));
  return std::chrono::duration<double, std::nano>(now - start).count() / repetitions /
         static_cast<double>(n);
}

// "median [min-max]" of v, each printed with `format`'s three conversions.
inline std::string cell(std::vector<double> v, const char* format) {
  std::sort(v.begin(), v.end());
  char text[64];
  std::snprintf(text, sizeof text, format, v[v.size() / 2], v.front(), v.back());
  return std::string(text);
}

// a[r] / b[r] for each round r.
inline std::vector<double> per_round(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> ratio;
  for (std::size_t r = 0; r < a.size(); ++r) {
    ratio.push_back(a[r] / b[r]);
  }
  return ratio;
}

}  // namespace speed_table
