// The update loop for one instruction set. CMake builds this file once per level with that level's
// compiler flags and RMSPROP_KERNEL_NS set to scalar, avx2, avx512 or neon; nothing here may run
// before the dispatcher has checked that the CPU supports the level.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "isa.h"
#include "kernels.h"
#include "prefetch.h"
#include "quantized.h"
#include "simd_ops.h"
#include "update_math.h"
#include "zen_l1.h"

#ifndef RMSPROP_KERNEL_NS
#error "RMSPROP_KERNEL_NS must name the instruction set this file is compiled for"
#endif

namespace rmsprop_ext::RMSPROP_KERNEL_NS {
namespace {

#if defined(__AVX512F__)
template <typename T>
using VectorOps = Avx512Ops<T>;
#elif defined(__AVX2__) && defined(__FMA__)
template <typename T>
using VectorOps = Avx2Ops<T>;
#elif defined(RMSPROP_KERNEL_NEON)
template <typename T>
using VectorOps = NeonOps<T>;
#else
template <typename T>
using VectorOps = ScalarOps<T>;
#endif

// Lanes of the tail round exactly like lanes of the body: the variant, not the instruction set,
// says whether a multiply-add rounds once, and the x86 vector kernels' tails take MKL's square
// roots in a whole vector of the body's (defined here, in this kernel's own namespace, so that
// each kernel keeps its own).
#if defined(__AVX2__) && defined(__FMA__)
template <typename T>
struct TailOps : ScalarOps<T> {
  template <SquareRoot kForm>
  static T mkl_sqrt(T x) {
    alignas(64) T lanes[VectorOps<T>::kWidth];
    VectorOps<T>::store(lanes, VectorOps<T>::template mkl_sqrt<kForm>(VectorOps<T>::broadcast(x)));
    return lanes[0];
  }
};
#else
template <typename T>
using TailOps = ScalarOps<T>;
#endif

// 16-bit formats are computed in float32.
template <typename P>
using Compute =
    std::conditional_t<std::is_same_v<P, bfloat16> || std::is_same_v<P, float16>, float, P>;

template <typename P>
constexpr bool kSixteenBit = !std::is_same_v<Compute<P>, P>;

// This kernel's instruction set, which decides the square roots it computes itself.
#if defined(__AVX512F__)
constexpr Isa kIsa = Isa::kAvx512;
#elif defined(__AVX2__) && defined(__FMA__)
constexpr Isa kIsa = Isa::kAvx2;
#elif defined(RMSPROP_KERNEL_NEON)
constexpr Isa kIsa = Isa::kNeon;
#else
constexpr Isa kIsa = Isa::kScalar;
#endif

// Lanes to run one at a time before `p + begin` sits on a vector-width boundary. numpy allocates
// large arrays 16 bytes past a cache line, so without this every AVX-512 access of a numpy buffer
// would straddle two lines. The first lanes go through the tail's arithmetic, which rounds exactly
// like the body's, so where the split falls never changes a result.
template <class Ops, typename P>
std::int64_t lanes_to_alignment(const P* p, std::int64_t begin, std::int64_t end) {
  constexpr auto kBytes = static_cast<std::uintptr_t>(Ops::kWidth * sizeof(P));
  const auto address = reinterpret_cast<std::uintptr_t>(p + begin);
  const auto lanes = static_cast<std::int64_t>(((kBytes - address % kBytes) % kBytes) / sizeof(P));
  return std::min(lanes, end - begin);
}

// Runs lanes(ops, i) over [begin, end): one lane at a time up to the vector boundary, full
// vectors, then the tail one lane at a time. `ops` is VectorOps<C>{} or TailOps<C>{}, so the
// caller picks the arithmetic by type and the same lane function serves body, peel and tail.
// The vectors go kGroup elements at a time, each group after ahead(i) (the memory a later group
// will need).
template <typename C, class Vector = VectorOps<C>, std::int64_t kGroup = Vector::kWidth, typename P,
          typename Lanes, typename Ahead>
void for_each_lane_group_ahead(const P* param, std::int64_t begin, std::int64_t end, Lanes&& lanes,
                               Ahead&& ahead) {
  static_assert(kGroup % Vector::kWidth == 0);
  using Tail = TailOps<C>;
  std::int64_t i = begin;
  for (const std::int64_t peel_end = begin + lanes_to_alignment<Vector>(param, begin, end);
       i < peel_end; ++i) {
    lanes(Tail{}, i);
  }
  for (; i + kGroup <= end; i += kGroup) {
    ahead(i);
    for (std::int64_t lane = 0; lane < kGroup; lane += Vector::kWidth) {
      lanes(Vector{}, i + lane);
    }
  }
  for (; i + Vector::kWidth <= end; i += Vector::kWidth) {
    lanes(Vector{}, i);
  }
  for (; i < end; ++i) {
    lanes(Tail{}, i);
  }
}

template <typename C, class Vector = VectorOps<C>, typename P, typename Lanes>
void for_each_lane_group(const P* param, std::int64_t begin, std::int64_t end, Lanes&& lanes) {
  for_each_lane_group_ahead<C, Vector>(param, begin, end, lanes, [](std::int64_t) {});
}

// Software prefetch inside the loop: one request per cache line of each buffer, kAheadBytes of
// the parameter ahead of the vectors being computed. The hardware prefetcher alone kept too few
// lines in flight once the arithmetic per vector grew (MKL's square roots): at 16M elements the
// float32 step with MKL's SSE4.2 root ran at 0.89 of a plain loop's speed, with these requests
// 1.1x faster than it (docs/storage_speed.md). Requests asked all at once for a later stretch
// gained little: more than the CPU's line-fill buffers hold, the rest are dropped or wait. The
// skewed loop (MKL's AVX2-class roots) keeps this distance too: on a Zen 5 core 4 KiB made its step
// faster while the memory was fast and slower while it was slow, by about as much
// (docs/storage_speed.md, "Asking further ahead in the skewed loop").
constexpr std::int64_t kAheadBytes = 2048;

// The cache lines of p's elements [i, i + kElements). The address is summed as an integer: near
// the end of a buffer it lies past it, which a prefetch may name (it never faults) but pointer
// arithmetic may not. Kept with prefetch(), not the bare builtin: GCC deleted the builtin's
// requests from whichever variants its inlining left them outlined in, a set that changed from
// build to build, and float32 momentum+centered at 16M elements ran at 0.86-0.90x torch.compile's
// step without them on a Zen 5 core, 0.98-1.04x with them (docs/storage_speed.md).
template <std::int64_t kElements, typename T>
inline void prefetch_elements(const T* p, std::int64_t i) {
  const std::uintptr_t address =
      reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(i) * sizeof(T);
  for (std::uintptr_t offset = 0; offset < kElements * sizeof(T); offset += 64) {
    prefetch(reinterpret_cast<const void*>(address + offset));
  }
}

// Elements per group of for_each_lane_group_ahead: a cache line of the parameter, or a vector
// where that is longer.
template <class Vector, typename P>
constexpr std::int64_t kLineGroup =
    std::max<std::int64_t>(Vector::kWidth, 64 / static_cast<std::int64_t>(sizeof(P)));

// ahead(i) for the buffers variant V reads and writes.
template <class V, std::int64_t kElements, typename P, typename S>
inline void prefetch_buffers_ahead(const ParamBuffers<P, S>& b, std::int64_t at) {
  prefetch_elements<kElements>(b.param, at);
  prefetch_elements<kElements>(b.grad, at);
  prefetch_elements<kElements>(b.square_avg, at);
  if constexpr (V::momentum) {
    prefetch_elements<kElements>(b.momentum_buffer, at);
  }
  if constexpr (V::centered) {
    prefetch_elements<kElements>(b.grad_avg, at);
  }
  if constexpr (V::compensation == Compensation::kKahan) {
    prefetch_elements<kElements>(b.compensation, at);
  }
}

// The requests for the lane group at element i of a loop over b: every buffer of variant V,
// kAheadBytes of the parameter ahead of it.
template <class V, std::int64_t kGroup, typename P, typename S>
inline void prefetch_group_ahead(const ParamBuffers<P, S>& b, std::int64_t i) {
  prefetch_buffers_ahead<V, kGroup>(b, i + kAheadBytes / static_cast<std::int64_t>(sizeof(P)));
}

// for_each_lane_group with every buffer of variant V asked for ahead.
template <class V, typename C, class Vector, typename P, typename S, typename Lanes>
void for_each_lane_group_prefetched(const ParamBuffers<P, S>& b, std::int64_t begin,
                                    std::int64_t end, Lanes&& lanes) {
  constexpr std::int64_t kGroup = kLineGroup<Vector, P>;
  for_each_lane_group_ahead<C, Vector, kGroup>(
      b.param, begin, end, lanes, [&b](std::int64_t i) { prefetch_group_ahead<V, kGroup>(b, i); });
}

// The end of a piece of about `length` elements from `from`, moved on to a vector boundary of
// `p` (or to `end`), so that pieces after the first need no lanes peeled one at a time.
template <class Ops, typename P>
std::int64_t piece_end(const P* p, std::int64_t from, std::int64_t end, std::int64_t length) {
  const std::int64_t nominal = std::min(end, from + length);
  return nominal + lanes_to_alignment<Ops>(p, nominal, end);
}

// Elements per block when the square root is an outside function: small enough that the block's
// buffers stay in L2 between the two halves, large enough that the call's own cost (tens of
// nanoseconds in MKL) is spread thin.
constexpr std::int64_t kSqrtBlock = 1024;

template <typename T>
void prefetch_lines(const T* p, std::int64_t begin, std::int64_t end) {
  if (p == nullptr) {
    return;
  }
  constexpr std::int64_t kLine = 64 / static_cast<std::int64_t>(sizeof(T));
  for (std::int64_t i = begin; i < end; i += kLine) {
    __builtin_prefetch(p + i);
  }
}

template <typename P, typename S>
void prefetch_block(const ParamBuffers<P, S>& b, std::int64_t begin, std::int64_t end) {
  prefetch_lines(b.param, begin, end);
  prefetch_lines(b.grad, begin, end);
  prefetch_lines(b.square_avg, begin, end);
  prefetch_lines(b.momentum_buffer, begin, end);
  prefetch_lines(b.grad_avg, begin, end);
}

// The coefficients of the vector body and of the scalar peel and tail; coefficients(ops) gives
// those of the lane arithmetic `ops`.
template <class Vector, typename C>
struct LaneCoefficients {
  Coefficients<Vector> vector;
  Coefficients<TailOps<C>> tail;

  LaneCoefficients(const Hyperparams& hp, double step) : vector(hp, step), tail(hp, step) {}
  template <class Ops>
  const auto& operator()(Ops) const {
    if constexpr (std::is_same_v<Ops, Vector>) {
      return vector;
    } else {
      return tail;
    }
  }
  void set_key(RandomKey key) {
    vector.key = key;
    tail.key = key;
  }
};

// The hyperparameters of variant V's coefficients. A round-each-op variant rounds the scalars
// torch rounds to a 16-bit tensor's dtype: the scalar of avg.add_(eps) and the alpha of
// grad.add(param, alpha=weight_decay) and of param.add_(buf, alpha=-lr) (through float, as c10
// converts a double). The other scalars (alpha, 1 - alpha, momentum, the value of addcdiv_) enter
// torch's float32 arithmetic unrounded.
template <typename P, class V>
Hyperparams scalars_as_rounded(Hyperparams hp) {
  if constexpr (V::round_each_op) {
    const auto as_stored = [](double x) {
      return static_cast<double>(
          ScalarOps<float>::rounded(static_cast<const P*>(nullptr), static_cast<float>(x)));
    };
    hp.eps = as_stored(hp.eps);
    hp.weight_decay = as_stored(hp.weight_decay);
    if (hp.momentum > 0.0) {
      hp.lr = as_stored(hp.lr);
    }
  }
  return hp;
}

// Splits [begin, end) of a tensor of n elements as torch's add(other, alpha=) does (see
// Hyperparams::torch_add_block): vector(from, to) for the stretches its vector loop covers,
// scalar(i) for each element after them.
template <typename Vector, typename Scalar>
void for_each_torch_chunk(std::int64_t n, const Hyperparams& hp, std::int64_t begin,
                          std::int64_t end, Vector&& vector, Scalar&& scalar) {
  constexpr std::int64_t kTorchGrain = 32768;  // at::internal::GRAIN_SIZE
  std::int64_t chunk = n;
  if (n >= kTorchGrain && hp.torch_threads > 1) {
    const std::int64_t threads =
        std::min<std::int64_t>(hp.torch_threads, (n + kTorchGrain - 1) / kTorchGrain);
    chunk = (n + threads - 1) / threads;
  }
  for (std::int64_t at = begin; at < end;) {
    const std::int64_t chunk_begin = chunk > 0 ? at / chunk * chunk : 0;
    const std::int64_t chunk_end = std::min(n, chunk_begin + chunk);
    const std::int64_t whole = (chunk_end - chunk_begin) / hp.torch_add_block * hp.torch_add_block;
    const std::int64_t vector_end = std::min(end, std::max(at, chunk_begin + whole));
    vector(at, vector_end);
    const std::int64_t stop = std::min(end, chunk_end);
    for (std::int64_t i = vector_end; i < stop; ++i) {
      scalar(i);
    }
    at = stop;
  }
}

// Software prefetch of the two-pass updates (16-bit parameters and state): elements per stretch
// (a multiple of every vector width) and how far ahead.
constexpr std::int64_t kPrefetchStretch = 512;
constexpr std::int64_t kPrefetchDistance = 4 * kPrefetchStretch;

// Calls run(from, to) over [begin, end) in stretches, asking for the memory of a later stretch
// before each. The two-pass update's chains of conversions (and roundings) keep few loads in
// flight (float16 at 16M elements ran 1.5x its in-cache time per element without this). Here the
// stretch beat requests spread over the loop (for_each_lane_group_prefetched in the state pass:
// 0.80-0.94 of this speed at 16M on the avx2 and avx512 kernels). Where the stretches split
// changes no result: lanes round alike everywhere.
template <typename P, typename S, typename Run>
void for_each_prefetched_stretch(const ParamBuffers<P, S>& b, std::int64_t begin, std::int64_t end,
                                 Run&& run) {
  for (std::int64_t stretch = begin; stretch < end;) {
    const std::int64_t ahead = std::min(end, stretch + kPrefetchDistance);
    prefetch_block(b, ahead, std::min(end, ahead + kPrefetchStretch));
    const std::int64_t stretch_end =
        piece_end<VectorOps<Compute<P>>>(b.param, stretch, end, kPrefetchStretch);
    run(stretch, stretch_end);
    stretch = stretch_end;
  }
}

// A buffer the update writes that starts up to this many bytes above one it reads, modulo 2 MiB,
// makes the loop's loads wait on its stores (see for_each_staged_block).
constexpr std::uintptr_t kWriteShadowBytes = 96;
constexpr std::uintptr_t kWriteShadowPeriod = std::uintptr_t{1} << 21;

inline bool starts_just_above(const void* written, const void* read) {
  const std::uintptr_t distance =
      (reinterpret_cast<std::uintptr_t>(written) - reinterpret_cast<std::uintptr_t>(read)) %
      kWriteShadowPeriod;
  return distance > 0 && distance <= kWriteShadowBytes;
}

// The buffers variant V writes, as members of ParamBuffers (float32 or float64 parameters and
// state: one element type). The staged loop copies these; the test below compares them with the
// buffers the update reads, which are these and the gradient.
template <class V, typename T>
constexpr auto written_buffers() {
  using B = ParamBuffers<T, T>;
  std::array<T * B::*, 2 + V::momentum + V::centered> members{&B::param, &B::square_avg};
  std::size_t next = 2;
  if constexpr (V::momentum) {
    members[next++] = &B::momentum_buffer;
  }
  if constexpr (V::centered) {
    members[next++] = &B::grad_avg;
  }
  return members;
}

// Whether variant V's update writes a buffer that starts just above one it reads. With one
// element type the distance is the same for every element.
template <class V, typename T>
bool writes_shadow_reads(const ParamBuffers<T, T>& b) {
  constexpr auto kWritten = written_buffers<V, T>();
  for (const auto written : kWritten) {
    if (starts_just_above(b.*written, b.grad)) {
      return true;
    }
    for (const auto read : kWritten) {
      if (starts_just_above(b.*written, b.*read)) {
        return true;
      }
    }
  }
  return false;
}

// Whether this kernel has the staged loop: the avx2 kernel alone. The avx512 kernel's vector is a
// whole cache line; there the same layouts cost less and staging did not pay (0.94-0.95 of the
// direct loop's speed at +16 and +64 bytes, benchmarks/buffer_layout.py), so the other kernels do
// not compile it for each of their hundreds of variants, and "always" leaves their loop as it is.
constexpr bool kHasStagedLoop = kIsa == Isa::kAvx2;

// Whether to stage: on the avx2 kernel where the buffers are shadowed.
template <class V, typename T>
bool stage_writes(const ParamBuffers<T, T>& b) {
  switch (write_staging()) {
    case WriteStaging::kAlways:
      return true;
    case WriteStaging::kNever:
      return false;
    case WriteStaging::kAuto:
      break;
  }
  return kIsa == Isa::kAvx2 && writes_shadow_reads<V>(b);
}

// Elements per block of the staged update: 4 KiB of float32 per written buffer.
constexpr std::int64_t kStageBlock = 1024;

// The block [block, block_end) of b on its own: every buffer and the generator's counter moved to
// the block's first element, indexed from 0 (float32 and float64 buffers: no per-block exponents).
template <typename T>
ParamBuffers<T, T> block_of(const ParamBuffers<T, T>& b, std::int64_t block,
                            std::int64_t block_end) {
  const auto at = [block](auto* buffer) { return buffer == nullptr ? buffer : buffer + block; };
  ParamBuffers<T, T> w = b;
  w.param = at(b.param);
  w.grad = at(b.grad);
  w.square_avg = at(b.square_avg);
  w.momentum_buffer = at(b.momentum_buffer);
  w.grad_avg = at(b.grad_avg);
  w.compensation = at(b.compensation);
  w.first_index = b.first_index + block;
  w.size = block_end - block;
  return w;
}

// update(staged, j) over [begin, end), with the buffers variant V writes staged: block by block
// their elements are copied into arrays on the stack, updated there (`staged` holds those arrays
// and the gradient's block, element j of the block), and copied back. A store whose address is a
// little below a later load's, modulo 2 MiB, holds that load back until the store is done: on a
// Sapphire Rapids core running the avx2 kernel, with 2 MiB pages and the parameter starting 16
// bytes above the gradient, each vector's loads waited for the vector before and the step ran 5
// times slower (2.6x faster staged; a copy of inductor's loop was as slow). Staged, the loop's
// stores go to the stack and the copies' are short; the same lanes compute the same values, so
// the bits are the same. It costs about a third where the layout does no harm, hence the test.
template <class V, class Vector, typename T, typename Update>
void for_each_staged_block(const ParamBuffers<T, T>& b, std::int64_t begin, std::int64_t end,
                           Update&& update) {
  constexpr auto kWritten = written_buffers<V, T>();
  // A block ends on a vector boundary, up to a vector's lanes past kStageBlock.
  constexpr auto kCapacity = static_cast<std::size_t>(kStageBlock + Vector::kWidth);
  alignas(64) T stage[kWritten.size()][kCapacity];
  constexpr std::int64_t kGroup = kLineGroup<Vector, T>;
  for (std::int64_t block = begin, block_end; block < end; block = block_end) {
    block_end = piece_end<Vector>(b.param, block, end, kStageBlock);
    const auto bytes = static_cast<std::size_t>(block_end - block) * sizeof(T);
    ParamBuffers<T, T> staged = block_of(b, block, block_end);
    for (std::size_t k = 0; k < kWritten.size(); ++k) {
      std::memcpy(stage[k], staged.*kWritten[k], bytes);
      staged.*kWritten[k] = stage[k];
    }
    // The gradient is read where it lies; ask for its next block, and the others', meanwhile.
    for_each_lane_group_ahead<T, Vector, kGroup>(
        staged.param, 0, staged.size, [&](auto ops, std::int64_t j) { update(ops, staged, j); },
        [&b, block](std::int64_t j) { prefetch_group_ahead<V, kGroup>(b, block + j); });
    for (std::size_t k = 0; k < kWritten.size(); ++k) {
      std::memcpy(b.*kWritten[k] + block, stage[k], bytes);
    }
  }
}

// Calls f with `root` as a compile-time constant when this kernel computes it for T (each kernel
// instantiates only the forms it has), else with kIeee: the update then calls the outside
// function between its halves.
template <typename T, typename F>
void with_square_root(SquareRoot root, F&& f) {
  const auto take = [&](auto form) {
    if constexpr (computes_square_root<T>(kIsa, decltype(form)::value)) {
      if (root == decltype(form)::value) {
        f(form);
        return true;
      }
    }
    return false;
  };
  using R = SquareRoot;
  if (!(take(std::integral_constant<R, R::kMklAvx512>{}) ||
        take(std::integral_constant<R, R::kMklAvx2>{}) ||
        take(std::integral_constant<R, R::kMklSse42>{}) ||
        take(std::integral_constant<R, R::kMklPortable>{}))) {
    f(std::integral_constant<R, R::kIeee>{});
  }
}

// A variant that only names a square root, for square_root<Ops, RootOnly<kForm>>.
template <SquareRoot kForm>
using RootOnly = Variant<false, Momentum::kNone, Options::kTorch, Decay::kNone, true, kForm>;

// The square root `kForm` (IEEE or one of MKL's) over [0, n), as the update's lanes take it: the
// body's vectors and the tail's lanes.
template <SquareRoot kForm, typename T>
void sqrt_form(std::int64_t n, const T* in, T* out) {
  for_each_lane_group<T>(in, 0, n, [&](auto ops, std::int64_t i) {
    using Ops = decltype(ops);
    Ops::store(out + i, square_root<Ops, RootOnly<kForm>>(Ops::load(in + i)));
  });
}

// This kernel's function for the square root `root` of a block of T, or nullptr where it does not
// compute that form (an outside function does).
template <typename T>
SqrtBlockFn<T> own_sqrt_block(SquareRoot root) {
  SqrtBlockFn<T> block = nullptr;
  with_square_root<T>(root, [&](auto form) {
    constexpr SquareRoot kForm = decltype(form)::value;
    // with_square_root falls back to kIeee for a form this kernel does not compute.
    if (kForm == root) {
      block = &sqrt_form<kForm, T>;
    }
  });
  return block;
}

// Elements per block of the two-pass update of 16-bit parameters: the block's gradients and
// roots (as float32) stay in L1 between the passes.
constexpr std::int64_t kPassBlock = 256;

// Whether with_written_pairs_apart keeps the pairs apart: on the Zen cores whose L1 hash zen_l1.h
// models (Zen to Zen 4), and on every CPU where tests ask for two passes ("always"), so that they
// run the copies wherever they run. On a Zen 5 core, whose L1 lost nothing on those layouts, the
// copies were pure cost: the centered step at 16M elements ran at 0.93-0.99 of a plain loop's
// speed with them, 1.00-1.05 without (docs/storage_speed.md, "Zen 5").
inline bool keep_written_pairs_apart() {
  return split_writes() == SplitWrites::kAlways || cpu_has_zen_l1_utags();
}

// Runs run(w, from, to) for the block [block, block_end) of b, a block of a two-pass loop: the
// first pass writes square_avg and grad_avg (centered), the second the parameter and the momentum
// buffer. Two passes keep the parameter's lines apart from square_avg's, but where the pair a pass
// writes evicts each other on the block's page (and `keep_apart`, keep_written_pairs_apart's
// answer), w is block_of the block, with the pair's second buffer copied onto the stack before and
// back after (float32 and float64 state). Otherwise w is b and [from, to) the block.
template <class V, std::int64_t kCapacity, typename P, typename S, typename Run>
void with_written_pairs_apart(const ParamBuffers<P, S>& b, std::int64_t block,
                              std::int64_t block_end, bool keep_apart, Run&& run) {
  if constexpr (std::is_same_v<P, S> && std::is_same_v<Compute<P>, P> &&
                (V::centered || V::momentum)) {
    const bool defer_grad_avg = keep_apart && V::centered &&
                                lines_evict_each_other(b.square_avg + block, b.grad_avg + block);
    const bool defer_momentum = keep_apart && V::momentum &&
                                lines_evict_each_other(b.param + block, b.momentum_buffer + block);
    if (defer_grad_avg || defer_momentum) {
      alignas(64) S grad_avg[static_cast<std::size_t>(kCapacity)];
      alignas(64) S momentum_buffer[static_cast<std::size_t>(kCapacity)];
      const std::int64_t n = block_end - block;
      const auto bytes = static_cast<std::size_t>(n) * sizeof(S);
      ParamBuffers<P, S> w = block_of(b, block, block_end);
      if (defer_grad_avg) {
        std::memcpy(grad_avg, w.grad_avg, bytes);
        w.grad_avg = grad_avg;
      }
      if (defer_momentum) {
        std::memcpy(momentum_buffer, w.momentum_buffer, bytes);
        w.momentum_buffer = momentum_buffer;
      }
      run(w, std::int64_t{0}, n);
      if (defer_grad_avg) {
        std::memcpy(b.grad_avg + block, grad_avg, bytes);
      }
      if (defer_momentum) {
        std::memcpy(b.momentum_buffer + block, momentum_buffer, bytes);
      }
      return;
    }
  }
  run(b, block, block_end);
}

// GCC inlines a lambda so marked before it scalarizes what passes through it; otherwise the
// lanes a loop below hands from one lambda to the next stayed in memory, copied in halves that the
// loads could not take from the stores (the skewed step ran 3x slower).
#define RMSPROP_EXT_LAMBDA_INLINE __attribute__((always_inline))

// The variants whose loops run for_each_vector_skewed: those with MKL's AVX2-class roots, a dozen
// dependent operations after the estimate. The CPU's square root is one instruction and MKL's
// AVX-512 one a few: their loops ran as fast or slightly slower skewed.
template <class V>
constexpr bool kSkewedLoop = V::root == SquareRoot::kMklAvx2 || V::root == SquareRoot::kMklSse42 ||
                             V::root == SquareRoot::kMklPortable;

// for_each_lane_group_ahead for an update whose vectors are split in two halves: first(i), the
// loads and the state up to the radicand (state_lanes), and second(i, lanes), the square root and
// what follows it; whole(ops, i) does both, for the lanes peeled before the first vector and the
// ones after the last. Each vector's first half runs two vectors ahead of its second half. In
// update_lanes' order the out-of-order window filled with operations waiting on one long chain,
// from the loads through the root to the division; skewed, the loads and the state's arithmetic
// of later vectors are there beside it. On a Zen 5 core the in-cache step with MKL's SSE4.2 root
// took a sixth less time (docs/storage_speed.md).
template <typename C, class Vector, std::int64_t kGroup, typename P, typename Whole, typename First,
          typename Second, typename Ahead>
[[gnu::always_inline]] inline void for_each_vector_skewed(const P* param, std::int64_t begin,
                                                          std::int64_t end, Whole&& whole,
                                                          First&& first, Second&& second,
                                                          Ahead&& ahead) {
  static_assert(kGroup % Vector::kWidth == 0);
  constexpr std::int64_t kWidth = Vector::kWidth;
  using Tail = TailOps<C>;
  std::int64_t i = begin;
  for (const std::int64_t peel_end = begin + lanes_to_alignment<Vector>(param, begin, end);
       i < peel_end; ++i) {
    whole(Tail{}, i);
  }
  if (i + 2 * kWidth <= end) {
    // Each step: the second half of the vector at i, the first half of the vector two on.
    auto next = first(i);
    auto after = first(i + kWidth);
    for (; i + kGroup + 2 * kWidth <= end; i += kGroup) {
      ahead(i);
      for (std::int64_t lane = 0; lane < kGroup; lane += kWidth) {
        const auto current = next;
        next = after;
        after = first(i + lane + 2 * kWidth);
        second(i + lane, current);
      }
    }
    for (; i + 3 * kWidth <= end; i += kWidth) {
      const auto current = next;
      next = after;
      after = first(i + 2 * kWidth);
      second(i, current);
    }
    second(i, next);
    second(i + kWidth, after);
    i += 2 * kWidth;
  }
  for (; i + kWidth <= end; i += kWidth) {
    whole(Vector{}, i);
  }
  for (; i < end; ++i) {
    whole(Tail{}, i);
  }
}

// update_lanes over [first, last) in blocks of about `block_length` elements (at most kMaxBlock),
// each in two passes: the state up to the radicand (and its square root, where kRootInFirstPass),
// then `between(block, block_end, roots)`, then the division and the parameter. The same
// operations on the same values, so the same bits.
// It serves three ends. A square root taken apart (BlockRoots) runs between the passes, on the
// whole block: an outside function (MKL's), or this kernel's own where the passes are split on Zen
// cores (see two_pass_blocks). And for 16-bit parameters the square root stays in the first pass:
// in one pass each vector's chain of dependent operations (conversions and roundings around the
// square root and the division) is so long that the CPU's scheduler fills with waiting operations
// before the divider is busy; each pass's chain is about half of it, so more vectors are in flight
// (in cache up to 1.7x faster, see docs/storage_speed.md). Where the state is float32 or float64
// the chain is short enough, and two passes gained nothing for that reason on Intel's cores (or
// lost: bf16 parameters with float32 state); float32 on Zen cores takes them for the L1's reason
// (two_pass_blocks). With MKL's AVX2-class roots in the first pass, that pass is skewed
// (for_each_vector_skewed), as their one-pass loop is.
// Where a pair of buffers written in one pass evicts each other, see with_written_pairs_apart.
template <class V, class Vector, std::int64_t kMaxBlock, bool kRootInFirstPass, typename P,
          typename S, class Coefficients, class Between>
void update_in_two_passes(const ParamBuffers<P, S>& b, std::int64_t first, std::int64_t last,
                          std::int64_t block_length, const Coefficients& coefficients,
                          Between&& between) {
  using C = Compute<P>;
  block_length = std::min(block_length, kMaxBlock);
  // A block ends on a vector boundary, up to a vector's lanes past its length.
  alignas(64) C grads[kMaxBlock + Vector::kWidth];
  alignas(64) C roots[kMaxBlock + Vector::kWidth];
  const bool keep_apart = keep_written_pairs_apart();
  for (std::int64_t block = first, block_end; block < last; block = block_end) {
    block_end = piece_end<Vector>(b.param, block, last, block_length);
    with_written_pairs_apart<V, kMaxBlock + Vector::kWidth>(
        b, block, block_end, keep_apart,
        [&](const ParamBuffers<P, S>& w, std::int64_t from, std::int64_t to) {
          // What the first pass keeps of the lanes at i: the gradient, and the radicand or its
          // square root.
          const auto keep_state = [from, &grads, &roots](
                                      auto ops, std::int64_t i,
                                      const auto& lanes) RMSPROP_EXT_LAMBDA_INLINE {
            using Ops = decltype(ops);
            Ops::store(grads + (i - from), lanes.grad);
            Ops::store(roots + (i - from),
                       kRootInFirstPass ? square_root<Ops, V>(lanes.radicand) : lanes.radicand);
          };
          const auto state_pass = [w, &coefficients, &keep_state](auto ops, std::int64_t i) {
            keep_state(ops, i, state_lanes<decltype(ops), V>(coefficients(ops), w, i));
          };
          if constexpr (kRootInFirstPass && kSkewedLoop<V>) {
            const auto& c = coefficients(Vector{});
            for_each_vector_skewed<C, Vector, Vector::kWidth>(
                w.param, from, to, state_pass,
                [&](std::int64_t i)
                    RMSPROP_EXT_LAMBDA_INLINE { return state_lanes<Vector, V>(c, w, i); },
                [&](std::int64_t i, const StateLanes<Vector>& lanes)
                    RMSPROP_EXT_LAMBDA_INLINE { keep_state(Vector{}, i, lanes); },
                [](std::int64_t) {});
          } else {
            for_each_lane_group<C, Vector>(w.param, from, to, state_pass);
          }
          between(block, block_end, roots);
          const auto param_pass = [w, from, &coefficients, &grads, &roots](auto ops,
                                                                           std::int64_t i) {
            using Ops = decltype(ops);
            const auto& c = coefficients(ops);
            param_lanes<Ops, V>(c, w, i, decayed_param<Ops, V>(c, w, i),
                                Ops::load(grads + (i - from)), Ops::load(roots + (i - from)));
          };
          for_each_lane_group<C, Vector>(w.param, from, to, param_pass);
        });
  }
}

// The `between` of update_in_two_passes for a root taken apart: `sqrt_block` over the block's
// radicands, in place. Where memory may be asked for ahead (not on Zen cores, see
// two_pass_blocks), the next block's is asked for first, so that its loads are in flight while
// the roots are computed.
template <typename P, typename S>
struct BlockRoots {
  const ParamBuffers<P, S>& buffers;
  std::int64_t end;
  SqrtBlockFn<P> sqrt_block;
  bool ask_ahead;

  void operator()(std::int64_t block, std::int64_t block_end, P* roots) const {
    if (ask_ahead) {
      prefetch_block(buffers, block_end, std::min(end, block_end + (block_end - block)));
    }
    sqrt_block(block_end - block, roots, roots);
  }
};

// Whether the one-pass loops (float32 and float64, 16-bit parameters with float32 state, and their
// roofline) run in two passes per block instead, the state's buffers then the parameter's: on
// AMD's Zen cores unless tests say otherwise. Their L1 data cache picks a line's way by an 8-bit
// hash of address bits 12-27 (a "utag"), and two lines of one set with the same utag cannot both
// be held. Where the parameter's line and square_avg's line of the same elements share one
// (buffers 2^26 + 2^13 bytes apart, as two 32 MiB tensors allocated with one between them are),
// each store finds its line evicted by the other buffer's access and fetches it again: the one-pass
// loop ran up to 3x slower. Two passes never need both lines at once, and on a Zen 4 core they
// were as fast as one pass or faster in every layout, size and option set measured, so they are
// taken there whatever the layout (docs/storage_speed.md). Not on Zen 5 (cpu_has_zen_l1_utags is
// false there): it lost nothing on those layouts, and while its memory was slow the one pass, with
// its requests ahead, ran 1.09-1.32x torch.compile's step where the two passes ran 0.82-1.01x.
inline bool two_pass_blocks() {
  switch (split_writes()) {
    case SplitWrites::kAlways:
      return true;
    case SplitWrites::kNever:
      return false;
    case SplitWrites::kAuto:
      break;
  }
  return cpu_has_zen_l1_utags();
}

// Elements whose indices share their high 32 bits, so one stochastic-rounding key serves them.
constexpr std::int64_t kKeyChunk = std::int64_t{1} << 32;

// Whether variant V of P has a two-pass loop of its own, with its square root in the first pass,
// for Zen cores (see two_pass_blocks). A loop per variant and root form costs compile time (the
// kernels hold hundreds of variants), so only the step most runs take has one: float32 with
// torch's options on an x86 vector kernel, with a multiply-add that rounds once and any root but
// MKL's AVX-512 one (Intel's). The other variants run the loop of V::RootApart, whose root
// between the passes, in a loop of its own, made the two passes 1.2-1.3x slower at 16M elements on
// a Zen 4 core (docs/storage_speed.md): still free of the evictions.
template <typename P, class V>
constexpr bool kOwnTwoPassLoop =
    std::is_same_v<P, float> && (kIsa == Isa::kAvx2 || kIsa == Isa::kAvx512) && V::fused &&
    !V::extended && (V::fused_decay || !V::coupled_decay) && V::root != SquareRoot::kMklAvx512;

// update_range_float's one-pass loop for the variants of kSkewedLoop.
template <class V, class Vector, typename P>
void update_range_skewed(const ParamBuffers<P, P>& b, std::int64_t begin, std::int64_t end,
                         const LaneCoefficients<Vector, P>& coefficients) {
  const Coefficients<Vector>& c = coefficients.vector;
  constexpr std::int64_t kGroup = kLineGroup<Vector, P>;
  for_each_vector_skewed<P, Vector, kGroup>(
      b.param, begin, end,
      [&](auto ops, std::int64_t i)
          RMSPROP_EXT_LAMBDA_INLINE { update_lanes<decltype(ops), V>(coefficients(ops), b, i); },
      [&](std::int64_t i) RMSPROP_EXT_LAMBDA_INLINE { return state_lanes<Vector, V>(c, b, i); },
      [&](std::int64_t i, const StateLanes<Vector>& lanes)
          RMSPROP_EXT_LAMBDA_INLINE { finish_lanes<Vector, V>(c, b, i, lanes); },
      [&](std::int64_t i) RMSPROP_EXT_LAMBDA_INLINE { prefetch_group_ahead<V, kGroup>(b, i); });
}

// float32 or float64 parameters and state (P): one pass over the buffers with the variant's square
// root in registers, or two passes per block, with the root in the first or taken apart between
// them.
template <typename P, class V, class Vector>
void update_range_float(const ParamBuffers<P, P>& b, std::int64_t begin, std::int64_t end,
                        const LaneCoefficients<Vector, P>& coefficients, const Hyperparams& hp) {
  const SquareRoot root = square_root_for(hp, static_cast<P*>(nullptr));
  // The dispatch gives V this root where this kernel computes it, else the IEEE form.
  const bool in_registers = root == V::root;
  if constexpr (kHasStagedLoop) {
    // Where the buffers lie decides it, once for the whole range (see for_each_staged_block).
    if (in_registers && stage_writes<V>(b)) {
      for_each_staged_block<V, Vector>(
          b, begin, end, [&](auto ops, const ParamBuffers<P, P>& staged, std::int64_t j) {
            update_lanes<decltype(ops), V>(coefficients(ops), staged, j);
          });
      return;
    }
  }
  const bool two_passes = two_pass_blocks();
  if (in_registers) {
    if (!two_passes) {
      if constexpr (kSkewedLoop<V>) {
        update_range_skewed<V, Vector>(b, begin, end, coefficients);
      } else {
        for_each_lane_group_prefetched<V, P, Vector>(b, begin, end, [&](auto ops, std::int64_t i) {
          update_lanes<decltype(ops), V>(coefficients(ops), b, i);
        });
      }
      return;
    }
    if constexpr (kOwnTwoPassLoop<P, V>) {
      // No memory asked for ahead: a request brings both colliding lines into L1 at once.
      update_in_two_passes<V, Vector, kPassBlock, true>(b, begin, end, kPassBlock, coefficients,
                                                        [](auto...) {});
      return;
    }
  }
  // The root taken apart, between the two passes: with the outside function, in blocks long
  // enough to spread the cost of its call, or on Zen cores (the variants without a loop of their
  // own) with this kernel's function in short blocks and, as above, nothing asked for ahead. The
  // memory is still read and written once, the block's intermediates stay in cache. Every root
  // form of the variant runs the one instantiation of V::RootApart.
  const SqrtBlockFn<P> own_root = own_sqrt_block<P>(root);
  const BlockRoots<P, P> roots{
      b, end, own_root != nullptr ? own_root : sqrt_block_for(hp, static_cast<P*>(nullptr)),
      !two_passes};
  update_in_two_passes<typename V::RootApart, Vector, kSqrtBlock, false>(
      b, begin, end, two_passes ? kPassBlock : kSqrtBlock, coefficients, roots);
}

// Vector: the vector arithmetic, VectorOps<C> or an equivalent (Avx512Bf16Ops).
template <typename P, typename S, class V, class Vector = VectorOps<Compute<P>>>
void update_range_variant(const ParamBuffers<P, S>& buffers, std::int64_t begin, std::int64_t end,
                          const Hyperparams& hp) {
  using C = Compute<P>;
  // A local copy: the unaligned vector stores may alias anything (GCC declares their types
  // may_alias), so through the caller's reference the compiler reloaded the buffer pointers
  // after every store, three loads per vector for nothing.
  const ParamBuffers<P, S> b = buffers;
  LaneCoefficients<Vector, C> coefficients(scalars_as_rounded<P, V>(hp), b.step);
  if constexpr (std::is_same_v<P, S> && !kSixteenBit<P>) {
    update_range_float<P, V, Vector>(b, begin, end, coefficients, hp);
  } else {
    // The other storage pairs take the CPU's square root, in registers.
    const bool two_passes = two_pass_blocks();
    // Elements [from, to) with this variant: vector body, peel and tail, memory asked for ahead.
    const auto update = [&](std::int64_t from, std::int64_t to) {
      if constexpr (kSixteenBit<P> && !std::is_same_v<S, float>) {
        for_each_prefetched_stretch(b, from, to, [&](std::int64_t first, std::int64_t last) {
          update_in_two_passes<V, Vector, kPassBlock, true>(b, first, last, kPassBlock,
                                                            coefficients, [](auto...) {});
        });
      } else {
        if (two_passes) {
          // No memory asked for ahead: a request brings both colliding lines into L1 at once.
          update_in_two_passes<V, Vector, kPassBlock, true>(b, from, to, kPassBlock, coefficients,
                                                            [](auto...) {});
          return;
        }
        for_each_lane_group_prefetched<V, C, Vector>(b, from, to, [&](auto ops, std::int64_t i) {
          update_lanes<decltype(ops), V>(coefficients(ops), b, i);
        });
      }
    };
    if constexpr (V::round_each_op && (V::momentum || V::coupled_decay)) {
      if (hp.torch_add_block > 0) {
        // Torch's vector elements as usual; those after them one lane at a time, as it does.
        for_each_torch_chunk(b.size, hp, begin, end, update, [&](std::int64_t i) {
          update_lanes<TailOps<C>, typename V::TorchScalar>(coefficients(TailOps<C>{}), b, i);
        });
        return;
      }
    }
    if constexpr (V::compensation == Compensation::kStochastic) {
      // The generator's key covers 2^32 elements; a new key at each multiple of 2^32.
      for (std::int64_t chunk = begin; chunk < end;) {
        const std::int64_t chunk_end = std::min(end, (chunk / kKeyChunk + 1) * kKeyChunk);
        const RandomKey key = random_key(hp.seed, b.stream, static_cast<std::uint64_t>(b.step),
                                         static_cast<std::uint64_t>(chunk / kKeyChunk));
        coefficients.set_key(key);
        update(chunk, chunk_end);
        chunk = chunk_end;
      }
      return;
    }
    update(begin, end);
  }
}

// Which stream of random bits a stochastic rounding draws from: the parameter's, or one per 8-bit
// state buffer, so that the roundings of one element are independent.
enum class RandomUse : std::uint64_t {
  kParam = 0,
  kSquareAvg = 1,
  kMomentumBuffer = 2,
  kGradAvg = 3
};

template <typename P, typename S>
RandomKey key_for(const Hyperparams& hp, const ParamBuffers<P, S>& b, std::int64_t index,
                  RandomUse use) {
  const auto chunk = static_cast<std::uint64_t>(index / kKeyChunk);
  return random_key(hp.seed, b.stream, static_cast<std::uint64_t>(b.step),
                    chunk | (static_cast<std::uint64_t>(use) << 56));
}

// Elements of 8-bit state decoded, updated and encoded together: eight blocks, so that the update
// has enough independent vectors to overlap the latency of its square roots and divisions (one
// block at a time ran at half the speed), while the decoded state (1 KiB per buffer) stays in L1.
constexpr std::int64_t kQuantStage = 8 * kQuantBlock;
// How many stages ahead update_range_quantized prefetches.
constexpr std::int64_t kPrefetchStages = 4;

// The blocks of [first, first + n) of one 8-bit buffer decoded into values[0..n).
template <CodeKind kKind>
void decode_blocks(const code8* codes, const std::int8_t* exponents, std::int64_t first,
                   std::int64_t n, float* values) {
  for (std::int64_t at = 0; at < n; at += kQuantBlock) {
    const std::int64_t block = (first + at) / kQuantBlock;
    if (n - at >= kQuantBlock) {  // a compile-time length, so the loop has a fixed count
      decode_block<kKind>(codes + first + at, exponents[block], kQuantBlock, values + at);
    } else {
      decode_block<kKind>(codes + first + at, exponents[block], n - at, values + at);
    }
  }
}

// values[0..n) encoded into the blocks of [first, first + n), rounded stochastically.
template <CodeKind kKind>
void encode_blocks(const float* values, std::int64_t first, std::int64_t n, code8* codes,
                   std::int8_t* exponents, RandomKey key) {
  for (std::int64_t at = 0; at < n; at += kQuantBlock) {
    const std::int64_t block = (first + at) / kQuantBlock;
    const auto index = static_cast<std::uint32_t>(first + at);
    if (n - at >= kQuantBlock) {
      exponents[block] =
          encode_block<kKind, true>(values + at, kQuantBlock, codes + first + at, key, index);
    } else {
      exponents[block] =
          encode_block<kKind, true>(values + at, n - at, codes + first + at, key, index);
    }
  }
}

// 8-bit state, a stage of blocks at a time: the state is decoded into float32 buffers in cache,
// the same update_lanes as for float32 state runs on them (the parameter takes the update from the
// unrounded state), and the new state is encoded with a new exponent per block, rounded
// stochastically. `begin` is a multiple of kQuantBlock (step.cpp splits threads there).
template <typename P, class V, class Vector = VectorOps<Compute<P>>>
void update_range_quantized(const ParamBuffers<P, code8>& buffers, std::int64_t begin,
                            std::int64_t end, const Hyperparams& hp) {
  using C = Compute<P>;
  static_assert(std::is_same_v<C, float>, "8-bit state is decoded to float32");
  const ParamBuffers<P, code8> b = buffers;
  LaneCoefficients<Vector, C> coefficients(hp, b.step);
  alignas(64) float square_avg[kQuantStage];
  alignas(64) float momentum_buffer[kQuantStage];
  alignas(64) float grad_avg[kQuantStage];
  std::int64_t keyed_chunk = -1;
  RandomKey square_avg_key{}, momentum_key{}, grad_avg_key{};
  for (std::int64_t stage = begin; stage < end; stage += kQuantStage) {
    const std::int64_t n = std::min(kQuantStage, end - stage);
    if (stage / kKeyChunk != keyed_chunk) {  // a stage never straddles two chunks
      keyed_chunk = stage / kKeyChunk;
      coefficients.set_key(key_for(hp, b, stage, RandomUse::kParam));
      square_avg_key = key_for(hp, b, stage, RandomUse::kSquareAvg);
      momentum_key = key_for(hp, b, stage, RandomUse::kMomentumBuffer);
      grad_avg_key = key_for(hp, b, stage, RandomUse::kGradAvg);
    }
    // The stages alternate decoding, arithmetic and encoding, which leaves the hardware prefetcher
    // behind: ask for a later stage's memory now.
    const std::int64_t ahead = std::min(end, stage + kPrefetchStages * kQuantStage);
    const std::int64_t ahead_end = std::min(end, ahead + kQuantStage);
    prefetch_lines(b.param, ahead, ahead_end);
    prefetch_lines(b.grad, ahead, ahead_end);
    prefetch_lines(b.square_avg, ahead, ahead_end);
    prefetch_lines(b.momentum_buffer, ahead, ahead_end);
    prefetch_lines(b.grad_avg, ahead, ahead_end);
    prefetch_lines(b.compensation, ahead, ahead_end);
    decode_blocks<CodeKind::kUnsigned>(b.square_avg, b.square_avg_exponents, stage, n, square_avg);
    if constexpr (V::momentum) {
      decode_blocks<CodeKind::kSigned>(b.momentum_buffer, b.momentum_buffer_exponents, stage, n,
                                       momentum_buffer);
    }
    if constexpr (V::centered) {
      decode_blocks<CodeKind::kSigned>(b.grad_avg, b.grad_avg_exponents, stage, n, grad_avg);
    }
    // A local copy per stage, as in update_range_variant: nothing aliases its pointers.
    ParamBuffers<P, float> staged;
    staged.param = b.param + stage;
    staged.grad = b.grad + stage;
    staged.square_avg = square_avg;
    staged.momentum_buffer = V::momentum ? momentum_buffer : nullptr;
    staged.grad_avg = V::centered ? grad_avg : nullptr;
    staged.compensation = b.compensation != nullptr ? b.compensation + stage : nullptr;
    staged.size = n;
    staged.step = b.step;
    staged.stream = b.stream;
    staged.first_index = stage;
    for_each_lane_group<C, Vector>(staged.param, 0, n, [&](auto ops, std::int64_t i) {
      update_lanes<decltype(ops), V>(coefficients(ops), staged, i);
    });
    encode_blocks<CodeKind::kUnsigned>(square_avg, stage, n, b.square_avg, b.square_avg_exponents,
                                       square_avg_key);
    if constexpr (V::momentum) {
      encode_blocks<CodeKind::kSigned>(momentum_buffer, stage, n, b.momentum_buffer,
                                       b.momentum_buffer_exponents, momentum_key);
    }
    if constexpr (V::centered) {
      encode_blocks<CodeKind::kSigned>(grad_avg, stage, n, b.grad_avg, b.grad_avg_exponents,
                                       grad_avg_key);
    }
  }
}

// The roofline of 8-bit state: the parameter's and gradient's traffic as for any state, and each
// state byte and exponent byte read and written once.
void traffic_codes(code8* codes, std::int8_t* exponents, std::int64_t begin, std::int64_t end,
                   std::uint8_t zero) {
  for (std::int64_t i = begin; i < end; ++i) {
    codes[i].bits = static_cast<std::uint8_t>(codes[i].bits | zero);
  }
  for (std::int64_t i = begin / kQuantBlock; i < (end + kQuantBlock - 1) / kQuantBlock; ++i) {
    exponents[i] = static_cast<std::int8_t>(exponents[i] | zero);
  }
}

template <typename P, typename S, class V>
void traffic_range_variant(const ParamBuffers<P, S>& b, std::int64_t begin, std::int64_t end,
                           const Hyperparams& hp) {
  if constexpr (std::is_same_v<S, code8>) {
    // A zero the compiler cannot prove (lr >= 0 was checked at run time), so the stores stay.
    const auto zero = static_cast<std::uint8_t>(hp.lr < 0.0);
    for_each_lane_group<Compute<P>>(b.param, begin, end, [&](auto ops, std::int64_t i) {
      traffic_lanes<decltype(ops), V, ParamBuffers<P, code8>, false>(b, i);
    });
    traffic_codes(b.square_avg, b.square_avg_exponents, begin, end, zero);
    if constexpr (V::momentum) {
      traffic_codes(b.momentum_buffer, b.momentum_buffer_exponents, begin, end, zero);
    }
    if constexpr (V::centered) {
      traffic_codes(b.grad_avg, b.grad_avg_exponents, begin, end, zero);
    }
  } else {
    static_cast<void>(hp);
    using Vector = VectorOps<Compute<P>>;
    // Where the step takes two passes, so does its roofline: the state's traffic, then the
    // parameter's, a few lines at a time.
    if (two_pass_blocks()) {
      const bool keep_apart = keep_written_pairs_apart();
      for (std::int64_t block = begin, block_end; block < end; block = block_end) {
        block_end = piece_end<Vector>(b.param, block, end, kPassBlock);
        // The same blocks as the update's, its stores kept apart the same way.
        with_written_pairs_apart<V, kPassBlock + Vector::kWidth>(
            b, block, block_end, keep_apart,
            [&](const ParamBuffers<P, S>& w, std::int64_t from, std::int64_t to) {
              for_each_lane_group<Compute<P>, Vector>(
                  w.param, from, to, [&](auto ops, std::int64_t i) __attribute__((always_inline)) {
                    traffic_lanes<decltype(ops), V, ParamBuffers<P, S>, true, 1>(w, i);
                  });
              for_each_lane_group<Compute<P>, Vector>(
                  w.param, from, to, [&](auto ops, std::int64_t i) __attribute__((always_inline)) {
                    traffic_lanes<decltype(ops), V, ParamBuffers<P, S>, true, 2>(w, i);
                  });
            });
      }
      return;
    }
    // Inlined by force: with a group of vectors per cache line, GCC called this lambda once per
    // vector for 16-bit forms of four or five buffers, in a loop meant to time memory alone.
    for_each_lane_group_prefetched<V, Compute<P>, Vector>(
        b, begin, end, [&](auto ops, std::int64_t i) __attribute__((always_inline)) {
          traffic_lanes<decltype(ops), V>(b, i);
        });
  }
}

// Calls f with std::true_type or std::false_type, turning a run-time flag into a template argument.
template <typename F>
void with_flag(bool flag, F&& f) {
  if (flag) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// Calls f with the Momentum kind of the hyperparameters as a compile-time constant.
template <typename F>
void with_momentum(const Hyperparams& hp, F&& f) {
  if (hp.momentum <= 0.0) {
    f(std::integral_constant<Momentum, Momentum::kNone>{});
  } else if (hp.nesterov) {
    f(std::integral_constant<Momentum, Momentum::kNesterov>{});
  } else {
    f(std::integral_constant<Momentum, Momentum::kHeavyBall>{});
  }
}

// Calls f with the Decay kind for one parameter as a compile-time constant. kFused (the decay in
// one multiply-add) comes only with fused multiply-adds, so it is not instantiated without them.
template <bool kFusedMultiplyAdd, typename F>
void with_decay(const Hyperparams& hp, bool complex_pairs, F&& f) {
  if (hp.weight_decay == 0.0 || hp.decoupled_weight_decay) {
    f(std::integral_constant<Decay, Decay::kNone>{});
    return;
  }
  if constexpr (kFusedMultiplyAdd) {
    if (!complex_pairs) {
      f(std::integral_constant<Decay, Decay::kFused>{});
      return;
    }
  }
  f(std::integral_constant<Decay, Decay::kSeparate>{});
}

// Calls f(V{}) with the Variant that matches the hyperparameters and the parameter: every option
// compile-time for float32 and float64 (whose results follow torch's bit for bit).
template <typename T, typename F>
void dispatch_variant(const Hyperparams& hp, bool complex_pairs, F&& f) {
  with_flag(hp.centered, [&](auto centered) {
    with_momentum(hp, [&](auto momentum) {
      with_flag(
          hp.eps_in_sqrt || hp.bias_correction || hp.decoupled_weight_decay, [&](auto extended) {
            with_flag(hp.fused_multiply_add, [&](auto fused) {
              with_decay<decltype(fused)::value>(hp, complex_pairs, [&](auto decay) {
                with_square_root<T>(square_root_for(hp, static_cast<T*>(nullptr)), [&](auto root) {
                  f(Variant<decltype(centered)::value, decltype(momentum)::value,
                            decltype(extended)::value ? Options::kExtended : Options::kTorch,
                            decltype(decay)::value, decltype(fused)::value,
                            decltype(root)::value>{});
                });
              });
            });
          });
    });
  });
}

// Calls f with the Compensation of a 16-bit parameter as a compile-time constant (kNone for
// float32 parameters, whose stores always round to nearest).
template <typename P, typename F>
void with_compensation(const Hyperparams& hp, F&& f) {
  using None = std::integral_constant<Compensation, Compensation::kNone>;
  if constexpr (kSixteenBit<P>) {
    if (hp.compensation == Compensation::kKahan) {
      f(std::integral_constant<Compensation, Compensation::kKahan>{});
      return;
    }
    if (hp.compensation == Compensation::kStochastic) {
      f(std::integral_constant<Compensation, Compensation::kStochastic>{});
      return;
    }
  }
  f(None{});
}

// The variants of the 16-bit storage pairs, which round to their storage anyway: only what
// changes the memory traffic or the store is compile-time, and whether any option beyond plain
// torch's is on. With none (the usual case), the loop holds no multiplication by 1 and no decay;
// otherwise the options beyond torch's and the coupled weight decay are coefficients (zero where
// unused: wd * param + grad is grad exactly, except that a gradient of -0 becomes +0). These
// steps are bound by their vector operations, not by memory, so the plain case pays for its own
// instantiation (measured: benchmarks/storage_speed.cpp). Multiply-adds always round once.
template <typename P, typename F>
void dispatch_storage_variant(const Hyperparams& hp, F&& f) {
  const bool plain = !hp.eps_in_sqrt && !hp.bias_correction && !hp.decoupled_weight_decay &&
                     hp.weight_decay == 0.0;
  with_flag(hp.centered, [&](auto centered) {
    with_momentum(hp, [&](auto momentum) {
      with_compensation<P>(hp, [&](auto compensation) {
        with_flag(plain, [&](auto torch_options_only) {
          constexpr bool kPlain = decltype(torch_options_only)::value;
          f(Variant<decltype(centered)::value, decltype(momentum)::value,
                    kPlain ? Options::kTorch : Options::kExtended,
                    kPlain ? Decay::kNone : Decay::kFused, true, SquareRoot::kIeee,
                    decltype(compensation)::value>{});
        });
      });
    });
  });
}

// Whether a 16-bit update with state of the parameter's dtype follows torch's rounding of each
// operation: asked for, no compensation, and only torch's own options (the others have no torch
// rounding to follow, and round once per stored value).
inline bool torch_rounding(const Hyperparams& hp) {
  return hp.round_each_op && hp.compensation == Compensation::kNone && !hp.eps_in_sqrt &&
         !hp.decoupled_weight_decay && !hp.lr_in_momentum && !hp.nesterov && !hp.bias_correction;
}

// The variants that round each operation as torch does: torch's options only, compile-time as
// for float32 (the coupled weight decay rounds as the multiply-adds do).
template <typename F>
void dispatch_torch_rounding_variant(const Hyperparams& hp, F&& f) {
  with_flag(hp.centered, [&](auto centered) {
    with_flag(hp.momentum > 0.0, [&](auto momentum) {
      with_flag(hp.weight_decay != 0.0, [&](auto decay) {
        with_flag(hp.fused_multiply_add, [&](auto fused) {
          constexpr bool kFused = decltype(fused)::value;
          f(Variant<
              decltype(centered)::value,
              decltype(momentum)::value ? Momentum::kHeavyBall : Momentum::kNone, Options::kTorch,
              decltype(decay)::value ? (kFused ? Decay::kFused : Decay::kSeparate) : Decay::kNone,
              kFused, SquareRoot::kIeee, Compensation::kNone, Rounding::kTorchVector>{});
        });
      });
    });
  });
}

// The roofline kernel's traffic depends only on which buffers exist.
template <typename P, typename F>
void dispatch_traffic(const Hyperparams& hp, F&& f) {
  with_flag(hp.centered, [&](auto centered) {
    with_flag(hp.momentum > 0.0, [&](auto momentum) {
      with_flag(kSixteenBit<P> && hp.compensation == Compensation::kKahan, [&](auto kahan) {
        f(Variant<decltype(centered)::value,
                  decltype(momentum)::value ? Momentum::kHeavyBall : Momentum::kNone,
                  Options::kTorch, Decay::kNone, true, SquareRoot::kIeee,
                  decltype(kahan)::value ? Compensation::kKahan : Compensation::kNone>{});
      });
    });
  });
}

template <typename P, typename S>
void update_range_any(const ParamBuffers<P, S>& b, std::int64_t begin, std::int64_t end,
                      const Hyperparams& hp) {
  auto run = [&](auto variant) {
#if defined(__AVX512BF16__)
    if constexpr (std::is_same_v<P, bfloat16> || std::is_same_v<S, bfloat16>) {
      if (bf16_instructions()) {
        update_range_variant<P, S, decltype(variant), Avx512Bf16Ops>(b, begin, end, hp);
        return;
      }
    }
#endif
    update_range_variant<P, S, decltype(variant)>(b, begin, end, hp);
  };
  if constexpr (std::is_same_v<S, code8>) {
    dispatch_storage_variant<P>(hp, [&](auto variant) {
#if defined(__AVX512BF16__)
      if constexpr (std::is_same_v<P, bfloat16>) {
        if (bf16_instructions()) {
          update_range_quantized<P, decltype(variant), Avx512Bf16Ops>(b, begin, end, hp);
          return;
        }
      }
#endif
      update_range_quantized<P, decltype(variant)>(b, begin, end, hp);
    });
  } else if constexpr (std::is_same_v<P, S> && !kSixteenBit<P>) {
    dispatch_variant<P>(hp, b.complex_pairs, run);
  } else {
    if constexpr (std::is_same_v<P, S>) {  // 16-bit state of the parameter's own dtype
      if (torch_rounding(hp)) {
        dispatch_torch_rounding_variant(hp, run);
        return;
      }
    }
    dispatch_storage_variant<P>(hp, run);
  }
}

template <typename P, typename S>
void traffic_range_any(const ParamBuffers<P, S>& b, std::int64_t begin, std::int64_t end,
                       const Hyperparams& hp) {
  dispatch_traffic<P>(
      hp, [&](auto variant) { traffic_range_variant<P, S, decltype(variant)>(b, begin, end, hp); });
}

}  // namespace

#define RMSPROP_EXT_DEFINE_PAIR(P, S)                                                   \
  void update_range(const ParamBuffers<P, S>& b, std::int64_t begin, std::int64_t end,  \
                    const Hyperparams& hp) {                                            \
    update_range_any(b, begin, end, hp);                                                \
  }                                                                                     \
  void traffic_range(const ParamBuffers<P, S>& b, std::int64_t begin, std::int64_t end, \
                     const Hyperparams& hp) {                                           \
    traffic_range_any(b, begin, end, hp);                                               \
  }
RMSPROP_EXT_FOR_EACH_STORAGE(RMSPROP_EXT_DEFINE_PAIR)
#undef RMSPROP_EXT_DEFINE_PAIR
#undef RMSPROP_EXT_LAMBDA_INLINE

namespace {
template <typename T>
void sqrt_divide_any(SquareRoot root, std::int64_t n, const T* numerator, const T* radicand,
                     T* out) {
  with_square_root<T>(root, [&](auto form) {
    for_each_lane_group<T>(out, 0, n, [&](auto ops, std::int64_t i) {
      using Ops = decltype(ops);
      using V = RootOnly<decltype(form)::value>;
      Ops::store(out + i,
                 Ops::div(Ops::load(numerator + i), square_root<Ops, V>(Ops::load(radicand + i))));
    });
  });
}
}  // namespace

void sqrt_divide(SquareRoot root, std::int64_t n, const float* numerator, const float* radicand,
                 float* out) {
  sqrt_divide_any(root, n, numerator, radicand, out);
}
void sqrt_divide(SquareRoot root, std::int64_t n, const double* numerator, const double* radicand,
                 double* out) {
  sqrt_divide_any(root, n, numerator, radicand, out);
}

namespace {
template <typename T>
void mkl_sqrt_any(SquareRoot form, std::int64_t n, const T* in, T* out) {
  with_square_root<T>(form, [&](auto root) {
    if constexpr (decltype(root)::value != SquareRoot::kIeee) {
      sqrt_form<decltype(root)::value>(n, in, out);
    }
  });
}
}  // namespace

// The caller (step.cpp) asks only for forms this kernel computes.
void mkl_sqrt(SquareRoot form, std::int64_t n, const float* in, float* out) {
  mkl_sqrt_any(form, n, in, out);
}

void mkl_sqrt(SquareRoot form, std::int64_t n, const double* in, double* out) {
  mkl_sqrt_any(form, n, in, out);
}

}  // namespace rmsprop_ext::RMSPROP_KERNEL_NS
