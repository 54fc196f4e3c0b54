// The driver: validates nothing it does not have to, splits the work over OpenMP threads on
// cache-line boundaries, and calls the kernel of the active instruction set.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "dispatch.h"
#include "isa.h"
#include "kernels.h"
#include "rmsprop.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rmsprop_ext {
namespace {

constexpr std::int64_t kCacheLineBytes = 64;

// Below this many elements in one call a fork/join costs more than a second thread saves.
constexpr std::int64_t kSerialBelowElements = std::int64_t{1} << 15;

std::atomic<int> requested_threads{0};
std::atomic<int> write_staging_mode{static_cast<int>(WriteStaging::kAuto)};
std::atomic<int> split_writes_mode{static_cast<int>(SplitWrites::kAuto)};
// Per calling thread: OpenMP makes the caller the team's thread 0, so it records its own team.
thread_local int last_team_size = 0;
// Updates running right now, from any number of caller threads.
std::atomic<int> updates_in_flight{0};

// Counts this update as running for as long as it lives.
class InFlight {
 public:
  InFlight() : others_(updates_in_flight.fetch_add(1, std::memory_order_acq_rel)) {}
  ~InFlight() { updates_in_flight.fetch_sub(1, std::memory_order_acq_rel); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
  // True when another update was already running as this one started.
  bool concurrent() const { return others_ > 0; }

 private:
  int others_;
};

// A place in the concatenation of all parameters: element `offset` of item `item`.
struct Position {
  std::size_t item;
  std::int64_t offset;
};

// Where the global element index `target` falls, moved forward to the next cache-line boundary of
// that item's param buffer so two threads never write the same line (to the next block of 8-bit
// state, which with the aligned buffers of torch and numpy is a cache-line boundary too). Every
// thread computes the same boundaries, so one thread's end is exactly the next one's start.
template <typename P, typename S>
Position boundary(const ParamBuffers<P, S>* items, std::size_t count, std::int64_t target) {
  std::size_t item = 0;
  while (item < count && target >= items[item].size) {
    target -= items[item].size;
    ++item;
  }
  if (item == count || target == 0) {
    return {item, 0};
  }
  if constexpr (std::is_same_v<S, code8>) {
    // A block of 8-bit state shares one exponent, so one thread updates all of it.
    target = (target + kQuantBlock - 1) / kQuantBlock * kQuantBlock;
  } else {
    const auto address = reinterpret_cast<std::uintptr_t>(items[item].param + target);
    const auto misalignment = static_cast<std::int64_t>(address % kCacheLineBytes);
    if (misalignment != 0) {
      target += (kCacheLineBytes - misalignment) / static_cast<std::int64_t>(sizeof(P));
    }
  }
  if (target >= items[item].size) {
    return {item + 1, 0};
  }
  return {item, target};
}

// Runs the kernel from `from` up to, not including, `to`.
template <typename P, typename S>
void run_span(const ParamBuffers<P, S>* items, std::size_t count, Position from, Position to,
              UpdateRangeFn<P, S> kernel, const Hyperparams& hp) {
  for (std::size_t item = from.item; item < count; ++item) {
    const std::int64_t begin = item == from.item ? from.offset : 0;
    const std::int64_t end = item == to.item ? to.offset : items[item].size;
    if (begin < end) {
      kernel(items[item], begin, end, hp);
    }
    if (item == to.item) {
      break;
    }
  }
}

// MKL's code path of a kMkl* square root, in words.
const char* mkl_path_name(SquareRoot root) {
  switch (root) {
    case SquareRoot::kMklAvx512:
      return "MKL's AVX-512 one";
    case SquareRoot::kMklAvx2:
      return "MKL's AVX2 one";
    case SquareRoot::kMklSse42:
      return "MKL's SSE4.2 one";
    case SquareRoot::kMklPortable:
      return "MKL's portable one";
    default:
      return "an outside one";
  }
}

// Empty when the kernel of `isa` can take the square root asked for T.
template <typename T>
std::string square_root_problem(const Hyperparams& hp, Isa isa, const char* dtype) {
  const SquareRoot root = square_root_for(hp, static_cast<T*>(nullptr));
  if (computes_square_root<T>(isa, root) ||
      sqrt_block_for(hp, static_cast<T*>(nullptr)) != nullptr) {
    return {};
  }
  std::ostringstream message;
  message << "the " << dtype << " square root ";
  if (root == SquareRoot::kOutside) {
    message << "is an outside function, but none is given";
  } else {
    message << "is " << mkl_path_name(root) << ", which the " << isa_name(isa)
            << " kernel cannot compute, and no outside function is given";
  }
  return message.str();
}

std::string square_roots_problem(const Hyperparams& hp, Isa isa) {
  std::string problem = square_root_problem<float>(hp, isa, "float32");
  return problem.empty() ? square_root_problem<double>(hp, isa, "float64") : problem;
}

template <typename P, typename S>
void step_any(const ParamBuffers<P, S>* items, std::size_t count, const Hyperparams& hp,
              int num_threads, Work work) {
  const Isa isa = active_isa();
  const UpdateRangeFn<P, S> kernel = kernel_for<P, S>(isa, work);
  if (work == Work::kUpdate) {
    // check_hyperparams passed, but the active kernel may have changed since.
    const std::string problem = square_roots_problem(hp, isa);
    if (!problem.empty()) {
      throw std::invalid_argument(problem);
    }
  }
  std::int64_t total = 0;
  for (std::size_t i = 0; i < count; ++i) {
    total += items[i].size;
  }
  if (total == 0) {
    return;  // nothing to do; last_num_threads keeps describing the last real update
  }
  const InFlight in_flight;
  // Callers on several threads at once (the GIL is released) already keep the cores busy: a team
  // each would oversubscribe them, so an update that starts while another runs stays serial.
  const bool serial = total < kSerialBelowElements || in_flight.concurrent();
  const int threads = serial ? 1 : threads_for(total, num_threads);

  if (threads <= 1) {
    last_team_size = 1;
    for (std::size_t i = 0; i < count; ++i) {
      kernel(items[i], 0, items[i].size, hp);
    }
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t team = omp_get_num_threads();
    const std::int64_t rank = omp_get_thread_num();
    if (rank == 0) {
      last_team_size = static_cast<int>(team);
    }
    const Position from = boundary(items, count, total * rank / team);
    const Position to = boundary(items, count, total * (rank + 1) / team);
    run_span(items, count, from, to, kernel, hp);
  }
#endif
}

bool finite_non_negative(double v) { return std::isfinite(v) && v >= 0.0; }

}  // namespace

std::string check_hyperparams(const Hyperparams& hp) {
  std::ostringstream message;
  if (!finite_non_negative(hp.lr)) {
    message << "lr must be a finite number >= 0, got " << hp.lr;
  } else if (!(hp.alpha >= 0.0 && hp.alpha <= 1.0)) {
    message << "alpha must be in [0, 1], got " << hp.alpha;
  } else if (!finite_non_negative(hp.eps)) {
    message << "eps must be a finite number >= 0, got " << hp.eps;
  } else if (!finite_non_negative(hp.weight_decay)) {
    message << "weight_decay must be a finite number >= 0, got " << hp.weight_decay;
  } else if (!finite_non_negative(hp.momentum)) {
    message << "momentum must be a finite number >= 0, got " << hp.momentum;
  } else if (hp.bias_correction && !(hp.alpha < 1.0)) {
    message << "bias_correction needs alpha < 1 (it divides by 1 - alpha^t), got " << hp.alpha;
  } else {
    return square_roots_problem(hp, active_isa());
  }
  return message.str();
}

template <typename P, typename S>
void step(const ParamBuffers<P, S>* items, std::size_t count, const Hyperparams& hp,
          int num_threads) {
  step_any(items, count, hp, num_threads, Work::kUpdate);
}

template <typename P, typename S>
void roofline_step(const ParamBuffers<P, S>* items, std::size_t count, const Hyperparams& hp,
                   int num_threads) {
  step_any(items, count, hp, num_threads, Work::kTraffic);
}

#define RMSPROP_EXT_INSTANTIATE_PAIR(P, S)                                             \
  template void step(const ParamBuffers<P, S>*, std::size_t, const Hyperparams&, int); \
  template void roofline_step(const ParamBuffers<P, S>*, std::size_t, const Hyperparams&, int);
RMSPROP_EXT_FOR_EACH_STORAGE(RMSPROP_EXT_INSTANTIATE_PAIR)
#undef RMSPROP_EXT_INSTANTIATE_PAIR

namespace {
template <typename T>
bool sqrt_divide_any(std::int64_t n, const T* numerator, const T* radicand, T* out,
                     SquareRoot root) {
  const Isa isa = active_isa();
  if (!computes_square_root<T>(isa, root)) {
    return false;
  }
  switch (isa) {
#if RMSPROP_EXT_HAVE_AVX2
    case Isa::kAvx2:
      avx2::sqrt_divide(root, n, numerator, radicand, out);
      break;
#endif
#if RMSPROP_EXT_HAVE_AVX512
    case Isa::kAvx512:
      avx512::sqrt_divide(root, n, numerator, radicand, out);
      break;
#endif
#if RMSPROP_EXT_HAVE_NEON
    case Isa::kNeon:
      neon::sqrt_divide(root, n, numerator, radicand, out);
      break;
#endif
    default:
      scalar::sqrt_divide(root, n, numerator, radicand, out);
  }
  return true;
}
}  // namespace

bool sqrt_divide(std::int64_t n, const float* numerator, const float* radicand, float* out,
                 SquareRoot root) {
  return sqrt_divide_any(n, numerator, radicand, out, root);
}

bool sqrt_divide(std::int64_t n, const double* numerator, const double* radicand, double* out,
                 SquareRoot root) {
  return sqrt_divide_any(n, numerator, radicand, out, root);
}

namespace {
template <typename T>
bool mkl_sqrt_any(SquareRoot form, std::int64_t n, const T* in, T* out) {
  // The active kernel when it computes the form, else the best one here that does (every kernel
  // that does gives the same bits; tests check each through the active one).
  std::vector<Isa> isas = available_isas();
  isas.push_back(active_isa());
  for (auto isa = isas.rbegin(); isa != isas.rend(); ++isa) {
    if (form == SquareRoot::kIeee || !computes_square_root<T>(*isa, form)) {
      continue;
    }
    switch (*isa) {
#if RMSPROP_EXT_HAVE_AVX512
      case Isa::kAvx512:
        avx512::mkl_sqrt(form, n, in, out);
        return true;
#endif
#if RMSPROP_EXT_HAVE_AVX2
      case Isa::kAvx2:
        avx2::mkl_sqrt(form, n, in, out);
        return true;
#endif
      default:
        break;
    }
  }
  return false;
}
}  // namespace

bool mkl_sqrt(SquareRoot form, std::int64_t n, const float* in, float* out) {
  return mkl_sqrt_any(form, n, in, out);
}

bool mkl_sqrt(SquareRoot form, std::int64_t n, const double* in, double* out) {
  return mkl_sqrt_any(form, n, in, out);
}

void set_write_staging(WriteStaging mode) {
  write_staging_mode.store(static_cast<int>(mode), std::memory_order_relaxed);
}

namespace {

// "auto", "always" or "never" as the switch Mode (WriteStaging, SplitWrites), named `what` in the
// error.
template <typename Mode>
Mode parse_auto_always_never(const std::string& mode, const char* what) {
  if (mode == "auto") {
    return Mode::kAuto;
  }
  if (mode == "always") {
    return Mode::kAlways;
  }
  if (mode == "never") {
    return Mode::kNever;
  }
  throw std::invalid_argument(std::string(what) + " must be 'auto', 'always' or 'never', got '" +
                              mode + "'");
}

}  // namespace

WriteStaging parse_write_staging(const std::string& mode) {
  return parse_auto_always_never<WriteStaging>(mode, "write staging");
}

WriteStaging write_staging() {
  return static_cast<WriteStaging>(write_staging_mode.load(std::memory_order_relaxed));
}

void set_split_writes(SplitWrites mode) {
  split_writes_mode.store(static_cast<int>(mode), std::memory_order_relaxed);
}

SplitWrites parse_split_writes(const std::string& mode) {
  return parse_auto_always_never<SplitWrites>(mode, "split writes");
}

SplitWrites split_writes() {
  return static_cast<SplitWrites>(split_writes_mode.load(std::memory_order_relaxed));
}

void set_num_threads(int num_threads) {
  requested_threads.store(std::max(0, num_threads), std::memory_order_relaxed);
}

int requested_num_threads() { return requested_threads.load(std::memory_order_relaxed); }

int get_num_threads() {
  const int requested = requested_num_threads();
  if (requested > 0) {
    return requested;
  }
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int last_num_threads() { return last_team_size; }

int updates_in_flight_now() { return updates_in_flight.load(std::memory_order_acquire); }

int openmp_version() {
#ifdef _OPENMP
  return _OPENMP;
#else
  return 0;
#endif
}

}  // namespace rmsprop_ext
