// The row-sparse driver: groups a gradient's rows by table row, brings idle rows up to date in
// closed form, and runs the active kernel's dense update on each touched row's elements.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "dispatch.h"
#include "isa.h"
#include "prefetch.h"
#include "quantized.h"
#include "rmsprop.h"
#include "sparse.h"
#include "storage.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rmsprop_ext {
namespace {

std::int64_t step_number(double step) { return std::llround(step); }

// The gradient's rows grouped by table row: distinct rows in ascending order, and for each the
// positions of its gradient rows, ascending (the order they are summed in). Ascending rows walk
// the table's pages in order, each row's page translation no longer a miss of its own (2x faster
// than a random order on a 4M-row table, docs/sparse.md). A stable radix sort of the positions by
// row, 11 bits a pass: work and memory of the order of the count, none of the table's size.
struct RowGroups {
  std::vector<std::int64_t> rows;
  std::vector<std::int64_t> starts;  // rows.size() + 1 offsets into positions
  std::vector<std::int64_t> positions;
};

RowGroups group_rows(const std::int64_t* indices, std::int64_t count, std::int64_t table_rows) {
  constexpr int kDigitBits = 11;
  constexpr std::size_t kBuckets = std::size_t{1} << kDigitBits;
  RowGroups groups;
  std::vector<std::int64_t> order(static_cast<std::size_t>(count));
  std::vector<std::int64_t> scratch(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    order[static_cast<std::size_t>(i)] = i;
  }
  int bits = 0;
  while (bits < 63 && (std::int64_t{1} << bits) < table_rows) {
    ++bits;
  }
  std::vector<std::int64_t> bucket_starts(kBuckets + 1);
  for (int shift = 0; shift < bits; shift += kDigitBits) {
    auto digit = [&](std::int64_t position) {
      return static_cast<std::size_t>((static_cast<std::uint64_t>(indices[position]) >> shift) &
                                      (kBuckets - 1));
    };
    std::fill(bucket_starts.begin(), bucket_starts.end(), 0);
    for (const std::int64_t position : order) {
      ++bucket_starts[digit(position) + 1];
    }
    for (std::size_t d = 0; d < kBuckets; ++d) {
      bucket_starts[d + 1] += bucket_starts[d];
    }
    for (const std::int64_t position : order) {
      scratch[static_cast<std::size_t>(bucket_starts[digit(position)]++)] = position;
    }
    order.swap(scratch);
  }
  groups.positions = std::move(order);
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t row = indices[groups.positions[static_cast<std::size_t>(i)]];
    if (groups.rows.empty() || groups.rows.back() != row) {
      groups.rows.push_back(row);
      groups.starts.push_back(i);
    }
  }
  groups.starts.push_back(count);
  return groups;
}

// f(u) for u in [0, n) over `threads` threads, in contiguous stretches.
template <typename F>
void parallel_for(std::int64_t n, int threads, F&& f) {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t u = 0; u < n; ++u) {
      f(u);
    }
    return;
  }
#endif
  for (std::int64_t u = 0; u < n; ++u) {
    f(u);
  }
}

// The arithmetic of each storage type: float64 for float64, float32 for the rest (as the update
// computes them). The catch-up rounds each result once to its storage.
template <typename T>
using Math = std::conditional_t<std::is_same_v<T, double>, double, float>;

inline float value_of(float v) { return v; }
inline double value_of(double v) { return v; }
inline float value_of(bfloat16 v) { return to_float(v); }
inline float value_of(float16 v) { return to_float(v); }

template <typename T>
T stored_as(Math<T> v) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    return to_bfloat16(v);
  } else if constexpr (std::is_same_v<T, float16>) {
    return to_float16(v);
  } else {
    return v;
  }
}

template <typename P>
constexpr bool kSixteenBit = std::is_same_v<P, bfloat16> || std::is_same_v<P, float16>;

// Gradient rows of a repeated row asked for ahead of their turn in its sum.
constexpr std::int64_t kPartsAhead = 4;

template <typename T>
void prefetch_span(const T* p, std::int64_t begin, std::int64_t n) {
  if (p == nullptr) {
    return;
  }
  const auto first = reinterpret_cast<std::uintptr_t>(p + begin) & ~std::uintptr_t{63};
  const auto end = reinterpret_cast<std::uintptr_t>(p + begin + n);
  for (std::uintptr_t line = first; line < end; line += 64) {
    prefetch(reinterpret_cast<const void*>(line));
  }
}

// The sum of a repeated row's gradient rows: in float32 for float32 and 16-bit tables (as
// coalesce() sums float32), float64 for float64; rounded once to the table's dtype.
template <typename P>
using Sum = Math<P>;

template <typename P>
void sum_rows(const P* values, const std::int64_t* positions, std::int64_t parts, std::int64_t n,
              Sum<P>* __restrict sums, P* __restrict summed) {
  std::fill(sums, sums + n, Sum<P>{0});
  for (std::int64_t k = 0; k < parts; ++k) {
    // The parts lie anywhere in the gradient's values: the next ones asked for ahead.
    if (k + kPartsAhead < parts) {
      prefetch_span(values, positions[k + kPartsAhead] * n, n);
    }
    const P* __restrict part = values + positions[k] * n;
    for (std::int64_t j = 0; j < n; ++j) {
      if constexpr (kSixteenBit<P>) {
        sums[j] += to_float(part[j]);
      } else {
        sums[j] += part[j];
      }
    }
  }
  for (std::int64_t j = 0; j < n; ++j) {
    summed[j] = stored_as<P>(sums[j]);
  }
}

// What the idle steps did (sparse.h's IdleSteps), for one row idle k steps.
struct IdleFactors {
  double state, buffer, param, buffer_into_param;
};

IdleFactors idle_factors(const IdleSteps& idle, std::int64_t k) {
  const auto i = static_cast<std::size_t>(k);
  return {idle.state_scale[i], idle.buffer_scale[i], idle.param_scale[i],
          idle.buffer_into_param[i]};
}

// The streams of random bits of the catch-up's stochastic roundings, apart from those of the
// update (kernel.cpp's RandomUse 0 to 3), so that a row's two roundings in one step are
// independent.
enum class CatchUpUse : std::uint64_t {
  kParam = 4,
  kSquareAvg = 5,
  kMomentumBuffer = 6,
  kGradAvg = 7
};

constexpr std::int64_t kKeyChunk = std::int64_t{1} << 32;

RandomKey catch_up_key(const Hyperparams& hp, std::uint64_t stream, std::int64_t step,
                       std::int64_t index, CatchUpUse use) {
  const auto chunk = static_cast<std::uint64_t>(index / kKeyChunk);
  return random_key(hp.seed, stream, static_cast<std::uint64_t>(step),
                    chunk | (static_cast<std::uint64_t>(use) << 56));
}

// A state buffer's elements [begin, begin + n) times `scale`. 8-bit state: whole blocks, decoded,
// scaled and encoded again (stochastically, as the update encodes).
template <CodeKind kKind, typename S>
void scale_state(S* state, std::int8_t* exponents, std::int64_t begin, std::int64_t n, double scale,
                 const Hyperparams& hp, std::uint64_t stream, std::int64_t step, CatchUpUse use) {
  if constexpr (std::is_same_v<S, code8>) {
    alignas(64) float values[kQuantBlock];
    for (std::int64_t at = begin; at < begin + n; at += kQuantBlock) {
      std::int8_t& exponent = exponents[at / kQuantBlock];
      decode_block<kKind>(state + at, exponent, kQuantBlock, values);
      for (float& value : values) {
        value = static_cast<float>(scale * value);
      }
      exponent = encode_block<kKind, true>(values, kQuantBlock, state + at,
                                           catch_up_key(hp, stream, step, at, use),
                                           static_cast<std::uint32_t>(at));
    }
  } else {
    static_cast<void>(exponents);
    const auto factor = static_cast<Math<S>>(scale);
    for (std::int64_t i = begin; i < begin + n; ++i) {
      state[i] = stored_as<S>(factor * value_of(state[i]));
    }
  }
}

// The parameter's element i set to `after`, stored as the group's compensation says (with Kahan
// summation, what the rounding lost goes to the compensation).
template <typename P>
void store_param(P* param, P* compensation, std::int64_t i, Math<P> after, const Hyperparams& hp,
                 RandomKey key) {
  if constexpr (kSixteenBit<P>) {
    if (hp.compensation == Compensation::kKahan && compensation != nullptr) {
      const P rounded = stored_as<P>(after);
      param[i] = rounded;
      compensation[i] = stored_as<P>(after - value_of(rounded));
      return;
    }
    if (hp.compensation == Compensation::kStochastic) {
      const std::uint32_t random = random_bits(key, static_cast<std::uint32_t>(i));
      if constexpr (std::is_same_v<P, bfloat16>) {
        param[i] = to_bfloat16_stochastic(after, random);
      } else {
        param[i] = to_float16_stochastic(after, random);
      }
      return;
    }
  }
  static_cast<void>(compensation);
  static_cast<void>(key);
  param[i] = stored_as<P>(after);
}

// The parameter's value as the update sees it: with Kahan summation, stored value plus
// compensation.
template <typename P>
Math<P> param_value(const P* param, const P* compensation, std::int64_t i, const Hyperparams& hp) {
  Math<P> value = value_of(param[i]);
  if constexpr (kSixteenBit<P>) {
    if (hp.compensation == Compensation::kKahan && compensation != nullptr) {
      value += value_of(compensation[i]);
    }
  }
  return value;
}

// Brings elements [begin, begin + n) (one row) through k idle steps, whose effect is `f`.
template <typename P, typename S>
void catch_up_row(const ParamBuffers<P, S>& t, std::int64_t begin, std::int64_t n,
                  const IdleFactors& f, const Hyperparams& hp, std::int64_t step) {
  scale_state<CodeKind::kUnsigned>(t.square_avg, t.square_avg_exponents, begin, n, f.state, hp,
                                   t.stream, step, CatchUpUse::kSquareAvg);
  if (hp.centered) {
    scale_state<CodeKind::kSigned>(t.grad_avg, t.grad_avg_exponents, begin, n, f.state, hp,
                                   t.stream, step, CatchUpUse::kGradAvg);
  }
  const bool momentum = hp.momentum > 0.0;
  const bool param_moves = f.param != 1.0 || (momentum && f.buffer_into_param != 0.0);
  if (param_moves) {
    using M = Math<P>;
    const auto scale = static_cast<M>(f.param);
    const auto pull = static_cast<M>(f.buffer_into_param);
    const RandomKey key = catch_up_key(hp, t.stream, step, begin, CatchUpUse::kParam);
    if constexpr (std::is_same_v<S, code8>) {
      // The momentum buffer's old values, decoded a block at a time.
      alignas(64) float buffer[kQuantBlock];
      for (std::int64_t at = begin; at < begin + n; at += kQuantBlock) {
        if (momentum) {
          decode_block<CodeKind::kSigned>(t.momentum_buffer + at,
                                          t.momentum_buffer_exponents[at / kQuantBlock],
                                          kQuantBlock, buffer);
        }
        for (std::int64_t j = 0; j < kQuantBlock; ++j) {
          const M before = param_value(t.param, t.compensation, at + j, hp);
          const M taken = momentum ? pull * static_cast<M>(buffer[j]) : M{0};
          store_param(t.param, t.compensation, at + j, scale * before - taken, hp, key);
        }
      }
    } else {
      for (std::int64_t i = begin; i < begin + n; ++i) {
        const M before = param_value(t.param, t.compensation, i, hp);
        const M taken = momentum ? pull * static_cast<M>(value_of(t.momentum_buffer[i])) : M{0};
        store_param(t.param, t.compensation, i, scale * before - taken, hp, key);
      }
    }
  }
  if (momentum) {
    scale_state<CodeKind::kSigned>(t.momentum_buffer, t.momentum_buffer_exponents, begin, n,
                                   f.buffer, hp, t.stream, step, CatchUpUse::kMomentumBuffer);
  }
}

template <typename P, typename S>
std::string check_rows_shape(const SparseRows<P, S>& rows) {
  std::ostringstream message;
  if (rows.row_size <= 0 || rows.table.size % rows.row_size != 0) {
    message << "the table's " << rows.table.size << " elements are not whole rows of "
            << rows.row_size;
  } else if (std::is_same_v<S, code8> && rows.row_size % kQuantBlock != 0) {
    message << "8-bit state needs rows of a multiple of " << kQuantBlock << " elements (its blocks "
            << "must not straddle rows), got rows of " << rows.row_size;
  } else if (rows.row_step != nullptr &&
             (rows.idle.length < 1 || rows.idle.state_scale == nullptr ||
              rows.idle.buffer_scale == nullptr || rows.idle.param_scale == nullptr ||
              rows.idle.buffer_into_param == nullptr)) {
    message << "exact steps need the idle steps' factors (at least entry 0)";
  }
  return message.str();
}

// Empty when every index names a row of the table, else a message naming the first that does not.
template <typename P, typename S>
std::string index_problem(const SparseRows<P, S>& rows) {
  const std::int64_t table_rows = row_count(rows);
  for (std::int64_t i = 0; i < rows.count; ++i) {
    const std::int64_t row = rows.indices[i];
    if (row < 0 || row >= table_rows) {
      std::ostringstream message;
      message << "index " << row << " (entry " << i << ") is outside the table's " << table_rows
              << " rows";
      return message.str();
    }
  }
  return {};
}

// Empty when row_step[row] allows catching the row up to step `to`: not ahead of it and behind by
// fewer steps than the idle factors cover.
template <typename P, typename S>
std::string check_lag(const SparseRows<P, S>& rows, std::int64_t row, std::int64_t to) {
  const std::int64_t last = rows.row_step[row];
  if (last <= to && to - last < rows.idle.length) {
    return {};
  }
  std::ostringstream message;
  message << "row " << row << " is up to date with step " << last << ", ";
  if (last > to) {
    message << "later than step " << to;
  } else {
    message << to - last << " steps before step " << to << ", more than the " << rows.idle.length
            << " idle steps the factors cover";
  }
  return message.str();
}

// Rows ahead whose memory is asked for before their turn: a touched row lies anywhere in the table,
// so each row's lines (and its page's translation) are a miss of their own, which the hardware
// prefetcher cannot foresee. 4 to 32 rows ahead measured alike, within the noise, on the bench's
// 4M x 64 table (exact step 1.8-2.1 ms, Zen 4, 2 threads): the requests themselves wait for free
// line-fill buffers, so more rows ahead put no more lines in flight.
constexpr std::int64_t kRowsAhead = 16;

// Asks for the memory of `row`'s elements in every buffer the step reads and writes.
template <typename P, typename S>
void prefetch_row(const ParamBuffers<P, S>& t, std::int64_t row, std::int64_t n,
                  const std::int64_t* row_step) {
  const std::int64_t begin = row * n;
  prefetch_span(t.param, begin, n);
  prefetch_span(t.square_avg, begin, n);
  prefetch_span(t.momentum_buffer, begin, n);
  prefetch_span(t.grad_avg, begin, n);
  prefetch_span(t.compensation, begin, n);
  if constexpr (std::is_same_v<S, code8>) {
    prefetch_span(t.square_avg_exponents, begin / kQuantBlock, n / kQuantBlock);
    prefetch_span(t.momentum_buffer_exponents, begin / kQuantBlock, n / kQuantBlock);
    prefetch_span(t.grad_avg_exponents, begin / kQuantBlock, n / kQuantBlock);
  }
  if (row_step != nullptr) {
    prefetch(row_step + row);
  }
}

// The table's elements of `row` in a view whose gradient pointer makes grad[row * row_size + j]
// the row's gradient element j: the kernel then runs on the table's own element numbers, which
// decide its stochastic roundings' bits, its 8-bit blocks and its alignment. The pointer is formed
// as an integer, since it lies outside the gradient's buffer (it is only read at the row).
template <typename P, typename S>
ParamBuffers<P, S> row_view(const ParamBuffers<P, S>& table, std::int64_t row,
                            std::int64_t row_size, const P* gradient) {
  ParamBuffers<P, S> view = table;
  const auto shift = static_cast<std::uintptr_t>(row * row_size) * sizeof(P);
  view.grad = reinterpret_cast<const P*>(reinterpret_cast<std::uintptr_t>(gradient) - shift);
  return view;
}

}  // namespace

template <typename P, typename S>
std::string check_sparse_rows(const SparseRows<P, S>& rows) {
  std::string problem = check_rows_shape(rows);
  if (!problem.empty()) {
    return problem;
  }
  problem = index_problem(rows);
  if (!problem.empty()) {
    return problem;
  }
  const std::int64_t previous = step_number(rows.table.step) - 1;
  if (rows.row_step != nullptr) {
    // Each row's step lies anywhere in row_step: asked for ahead, so that the misses overlap.
    constexpr std::int64_t kAhead = 32;
    for (std::int64_t i = 0; i < rows.count; ++i) {
      if (i + kAhead < rows.count) {
        prefetch(rows.row_step + rows.indices[i + kAhead]);
      }
      const std::int64_t last = rows.row_step[rows.indices[i]];
      if (last > previous || previous - last >= rows.idle.length) {
        return check_lag(rows, rows.indices[i], previous);
      }
    }
  }
  if (rows.count > 0 && rows.values == nullptr) {
    return "the gradient's values are missing";
  }
  return {};
}

namespace {

// sparse_step (kUpdate), or the same rows' memory traffic with the roofline kernel (kTraffic: no
// catch-up, row_step left as it is).
template <typename P, typename S>
void step_rows(const SparseRows<P, S>* items, std::size_t count, const Hyperparams& hp,
               int num_threads, Work work) {
  std::string problem = check_hyperparams(hp);
  for (std::size_t k = 0; k < count && problem.empty(); ++k) {
    problem = check_sparse_rows(items[k]);
  }
  if (!problem.empty()) {
    throw std::invalid_argument(problem);
  }
  const UpdateRangeFn<P, S> kernel = kernel_for<P, S>(active_isa(), work);
  const bool update = work == Work::kUpdate;
  for (std::size_t k = 0; k < count; ++k) {
    const SparseRows<P, S>& rows = items[k];
    const RowGroups groups = group_rows(rows.indices, rows.count, row_count(rows));
    const auto distinct = static_cast<std::int64_t>(groups.rows.size());
    const std::int64_t step = step_number(rows.table.step);
    const std::int64_t n = rows.row_size;
    const int threads = threads_for(distinct * n, num_threads);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
      std::vector<P> summed(static_cast<std::size_t>(n));
      std::vector<Sum<P>> sums(static_cast<std::size_t>(n));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (std::int64_t u = 0; u < distinct; ++u) {
        // (with static scheduling a thread's rows are consecutive in `groups.rows`)
        if (u + kRowsAhead < distinct) {
          const auto ahead = static_cast<std::size_t>(u + kRowsAhead);
          prefetch_row(rows.table, groups.rows[ahead], n, rows.row_step);
          prefetch_span(rows.values,
                        groups.positions[static_cast<std::size_t>(groups.starts[ahead])] * n, n);
        }
        const std::int64_t row = groups.rows[static_cast<std::size_t>(u)];
        const std::int64_t first = groups.starts[static_cast<std::size_t>(u)];
        const std::int64_t last = groups.starts[static_cast<std::size_t>(u) + 1];
        const P* gradient = rows.values + groups.positions[static_cast<std::size_t>(first)] * n;
        if (last - first > 1) {  // a repeated row: its gradient rows summed, in order
          sum_rows(rows.values, groups.positions.data() + first, last - first, n, sums.data(),
                   summed.data());
          gradient = summed.data();
        }
        if (update && rows.row_step != nullptr) {
          const std::int64_t idle = step - 1 - rows.row_step[row];
          if (idle > 0) {
            catch_up_row(rows.table, row * n, n, idle_factors(rows.idle, idle), hp, step);
          }
        }
        kernel(row_view(rows.table, row, n, gradient), row * n, (row + 1) * n, hp);
        if (update && rows.row_step != nullptr) {
          rows.row_step[row] = step;
        }
      }
    }
  }
}

}  // namespace

template <typename P, typename S>
void sparse_step(const SparseRows<P, S>* items, std::size_t count, const Hyperparams& hp,
                 int num_threads) {
  step_rows(items, count, hp, num_threads, Work::kUpdate);
}

template <typename P, typename S>
void roofline_sparse_step(const SparseRows<P, S>* items, std::size_t count, const Hyperparams& hp,
                          int num_threads) {
  step_rows(items, count, hp, num_threads, Work::kTraffic);
}

template <typename P, typename S>
std::string check_catch_up(const SparseRows<P, S>& rows, std::int64_t min_idle) {
  std::string problem = check_rows_shape(rows);
  if (problem.empty() && rows.row_step == nullptr) {
    problem = "catching rows up needs their row_step";
  }
  if (problem.empty() && rows.indices != nullptr) {
    problem = index_problem(rows);
  }
  const std::int64_t to = step_number(rows.table.step);
  const std::int64_t checked = rows.indices != nullptr ? rows.count : row_count(rows);
  for (std::int64_t i = 0; i < checked && problem.empty(); ++i) {
    const std::int64_t row = rows.indices != nullptr ? rows.indices[i] : i;
    if (to - rows.row_step[row] >= std::max<std::int64_t>(min_idle, 1) || rows.row_step[row] > to) {
      problem = check_lag(rows, row, to);
    }
  }
  return problem;
}

template <typename P, typename S>
void catch_up_rows(const SparseRows<P, S>* items, std::size_t count, const Hyperparams& hp,
                   std::int64_t min_idle, int num_threads) {
  std::string problem = check_hyperparams(hp);
  for (std::size_t k = 0; k < count && problem.empty(); ++k) {
    problem = check_catch_up(items[k], min_idle);
  }
  if (!problem.empty()) {
    throw std::invalid_argument(problem);
  }
  min_idle = std::max<std::int64_t>(min_idle, 1);
  for (std::size_t k = 0; k < count; ++k) {
    const SparseRows<P, S>& rows = items[k];
    const std::int64_t to = step_number(rows.table.step);
    const std::int64_t n = rows.row_size;
    auto catch_up = [&](std::int64_t row) {
      const std::int64_t idle = to - rows.row_step[row];
      if (idle >= min_idle) {
        catch_up_row(rows.table, row * n, n, idle_factors(rows.idle, idle), hp, to);
        rows.row_step[row] = to;
      }
    };
    if (rows.indices != nullptr) {
      const RowGroups groups = group_rows(rows.indices, rows.count, row_count(rows));
      const auto distinct = static_cast<std::int64_t>(groups.rows.size());
      parallel_for(distinct, threads_for(distinct * n, num_threads),
                   [&](std::int64_t u) { catch_up(groups.rows[static_cast<std::size_t>(u)]); });
    } else {
      const std::int64_t table_rows = row_count(rows);
      parallel_for(table_rows, threads_for(table_rows * n, num_threads), catch_up);
    }
  }
}

#define RMSPROP_EXT_INSTANTIATE_SPARSE(P, S)                                                   \
  template std::string check_sparse_rows(const SparseRows<P, S>&);                             \
  template std::string check_catch_up(const SparseRows<P, S>&, std::int64_t);                  \
  template void sparse_step(const SparseRows<P, S>*, std::size_t, const Hyperparams&, int);    \
  template void roofline_sparse_step(const SparseRows<P, S>*, std::size_t, const Hyperparams&, \
                                     int);                                                     \
  template void catch_up_rows(const SparseRows<P, S>*, std::size_t, const Hyperparams&,        \
                              std::int64_t, int);
RMSPROP_EXT_FOR_EACH_STORAGE(RMSPROP_EXT_INSTANTIATE_SPARSE)
#undef RMSPROP_EXT_INSTANTIATE_SPARSE

}  // namespace rmsprop_ext
