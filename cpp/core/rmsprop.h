// Public C++ API of the fused RMSProp update: plain pointers and lengths, no Python or torch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "quantized.h"
#include "storage.h"

namespace rmsprop_ext {

// An elementwise square root over n values, in place when out == in. The update uses one in place
// of the CPU's correctly rounded square root to follow a library whose own rounds differently:
// torch with MKL takes its square roots from MKL's vector math, which can be 1 ulp below the IEEE
// result.
template <typename T>
using SqrtBlockFn = void (*)(std::int64_t n, const T* in, T* out);

// Which square root an update takes. torch.sqrt is MKL's vector square root (vsSqrt/vdSqrt, high
// accuracy), and MKL runs a different algorithm on each CPU class; the kMkl* forms are those
// algorithms, operation for operation (read from MKL's code in libtorch_cpu and checked against it
// on every float32 bit pattern), computed in registers by the kernels that have their
// instructions. Where a kernel cannot, it calls the outside function instead.
enum class SquareRoot {
  // The CPU's, correctly rounded.
  kIeee,
  // MKL's AVX-512 code path (float32 and float64): the avx512 kernel.
  kMklAvx512,
  // MKL's AVX2 code path: for float32 the 12-bit reciprocal square-root estimate (vrsqrtps), one
  // Newton step and a correction; for float64 the same estimate of the reduced argument refined by
  // a series; with fused multiply-adds. The avx2 and avx512 kernels.
  kMklAvx2,
  // MKL's SSE4.2 code path (also what MKL takes on CPUs it gives no better path): the same steps
  // with every product and sum rounded separately. The avx2 and avx512 kernels.
  kMklSse42,
  // MKL's code path that takes its estimate from IEEE operations: 1 / sqrt(x) in float32 cut to 12
  // bits, then kMklSse42's steps, so its bits are the same on every CPU. The avx2 and avx512
  // kernels.
  kMklPortable,
  // The outside function (Hyperparams::sqrt_f32 / sqrt_f64), on blocks of elements.
  kOutside,
};

// How a bfloat16 or float16 parameter takes its update (float32 and float64 ones always round to
// nearest).
enum class Compensation {
  // Round to nearest even, as torch does.
  kNone,
  // Kahan summation: a compensation buffer of the parameter's dtype keeps what each rounding of
  // the parameter lost and adds it to the next update (as optimi does).
  kKahan,
  // Stochastic rounding with the counter-based generator of storage.h (16-bit parameters).
  kStochastic,
};

// Hyperparameters of one update, in the vocabulary of torch.optim.RMSprop plus the extensions
// (eps inside the square root, decoupled weight decay) and the other libraries' RMSProp math
// (learning rate inside the momentum buffer, Nesterov momentum, bias correction).
struct Hyperparams {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
  bool maximize = false;
  bool eps_in_sqrt = false;
  bool decoupled_weight_decay = false;
  // b <- momentum * b + lr * g / d; x <- x - b (TF1, Keras, timm's RMSpropTF, optax) instead of
  // torch's b <- momentum * b + g / d; x <- x - lr * b.
  bool lr_in_momentum = false;
  // The step takes g / d + momentum * b instead of b (optax's nesterov=True).
  bool nesterov = false;
  // square_avg and grad_avg are divided by 1 - alpha^t before use (optax's bias_correction=True);
  // t is each parameter's ParamBuffers::step.
  bool bias_correction = false;
  // How a * b + c rounds, to follow torch bit for bit: once (torch's AVX2 and AVX-512 kernels use
  // FMA instructions, and GCC contracts their scalar tails) or twice (torch's DEFAULT kernels).
  bool fused_multiply_add = true;
  // The square root of float32 and of float64 updates; kOutside needs the function, and so does
  // a kMkl* form in a kernel that cannot compute it (see computes_square_root in kernels.h).
  SquareRoot square_root_f32 = SquareRoot::kIeee;
  SquareRoot square_root_f64 = SquareRoot::kIeee;
  SqrtBlockFn<float> sqrt_f32 = nullptr;
  SqrtBlockFn<double> sqrt_f64 = nullptr;
  Compensation compensation = Compensation::kNone;
  // A bfloat16 or float16 parameter with state of its own dtype and no compensation rounds the
  // result of every one of torch's operations to that dtype, as torch's 16-bit kernels do (and
  // the scalars torch rounds: eps, the weight decay and, with momentum, the learning rate), so
  // that it gives torch.optim.RMSprop's bits. Otherwise (false, or options torch lacks) each
  // stored value is rounded once from the float32 arithmetic.
  bool round_each_op = false;
  // How torch's add(other, alpha=) rounds on 16-bit tensors, which round_each_op follows (the
  // weight decay and, with momentum, the parameter's update): each of its threads takes a chunk of
  // the tensor (one chunk below 32768 elements or with one thread, else the tensor split evenly
  // over min(torch_threads, ceil(n / 32768)) threads), its vector loop runs over whole blocks of
  // torch_add_block elements of the chunk and rounds alpha * other + x once, and the elements
  // after the last whole block round the product to the dtype first. 0: every element as in the
  // vector loop.
  std::int64_t torch_add_block = 0;
  int torch_threads = 1;
  // The stochastic rounding's seed; with ParamBuffers::stream, the step and the element index it
  // fixes every random bit.
  std::uint64_t seed = 0;
};

inline SquareRoot square_root_for(const Hyperparams& hp, float*) { return hp.square_root_f32; }
inline SquareRoot square_root_for(const Hyperparams& hp, double*) { return hp.square_root_f64; }
inline SqrtBlockFn<float> sqrt_block_for(const Hyperparams& hp, float*) { return hp.sqrt_f32; }
inline SqrtBlockFn<double> sqrt_block_for(const Hyperparams& hp, double*) { return hp.sqrt_f64; }
// 16-bit parameters are updated in float32 with the CPU's square root.
inline SquareRoot square_root_for(const Hyperparams&, bfloat16*) { return SquareRoot::kIeee; }
inline SquareRoot square_root_for(const Hyperparams&, float16*) { return SquareRoot::kIeee; }

// The buffers of one parameter: param and grad of type P, the state of type S. All have `size`
// elements; momentum_buffer is read and written only when momentum > 0, grad_avg only when
// centered, compensation (type P) only with Kahan summation. Buffers must not overlap. `step` is
// the number of this update (1 for the first), read for the bias correction and the stochastic
// rounding; `stream` tells parameters apart in the stochastic rounding's generator. 8-bit state
// (S = code8, see quantized.h) has one exponent byte per block of each state buffer.
template <typename P, typename S = P>
struct ParamBuffers {
  P* param = nullptr;
  const P* grad = nullptr;
  S* square_avg = nullptr;
  S* momentum_buffer = nullptr;
  S* grad_avg = nullptr;
  P* compensation = nullptr;
  std::int8_t* square_avg_exponents = nullptr;
  std::int8_t* momentum_buffer_exponents = nullptr;
  std::int8_t* grad_avg_exponents = nullptr;
  std::int64_t size = 0;
  double step = 1.0;
  std::uint64_t stream = 0;
  // The index in the whole parameter of element 0 of these buffers (the generator's counter).
  std::int64_t first_index = 0;
  // The buffers hold complex numbers as (real, imaginary) pairs, `size` reals in all. torch adds
  // the weight decay to a complex gradient with complex arithmetic, which rounds the product and
  // the sum separately whatever the instruction set; everything else runs on the real view.
  bool complex_pairs = false;
};

// Returns an empty string when the hyperparameters are usable with the active kernel, otherwise a
// message that names the offending one. The step functions assume this check has passed.
std::string check_hyperparams(const Hyperparams& hp);

// The (parameter, state) storage pairs the kernels are built for. 16-bit formats are computed in
// float32: converted as they are loaded, rounded as they are stored.
#define RMSPROP_EXT_FOR_EACH_STORAGE(X) \
  X(float, float)                       \
  X(double, double)                     \
  X(float, bfloat16)                    \
  X(bfloat16, bfloat16)                 \
  X(bfloat16, float)                    \
  X(float16, float16)                   \
  X(float16, float)                     \
  X(float, code8)                       \
  X(bfloat16, code8)                    \
  X(float16, code8)

// One RMSProp step over every element of every parameter, in place, in a single pass over memory.
// num_threads <= 0 means "use get_num_threads()". Defined for the pairs listed above.
template <typename P, typename S>
void step(const ParamBuffers<P, S>* items, std::size_t count, const Hyperparams& hp,
          int num_threads = 0);

// Moves exactly the bytes step() moves for these hyperparameters (same buffers read and written,
// same threads and blocks) with one add per buffer instead of the RMSProp arithmetic: the memory
// roofline that step() is measured against. It writes every buffer back unchanged (for finite
// grads), so it can run on the same buffers as step() and see the same memory.
template <typename P, typename S>
void roofline_step(const ParamBuffers<P, S>* items, std::size_t count, const Hyperparams& hp,
                   int num_threads = 0);

// out[i] = numerator[i] / sqrt(radicand[i]) for i < n, on the calling thread, with the active
// kernel's vectors: the square root and divide that every update takes once per element, and
// nothing else. In cache, where memory does not limit the update, this is its speed limit;
// benchmarks/core_speed.cpp measures step() against it. `root` is the IEEE square root or one of
// MKL's that the active kernel computes (false, writing nothing, for one it does not).
bool sqrt_divide(std::int64_t n, const float* numerator, const float* radicand, float* out,
                 SquareRoot root = SquareRoot::kIeee);
bool sqrt_divide(std::int64_t n, const double* numerator, const double* radicand, double* out,
                 SquareRoot root = SquareRoot::kIeee);

// Writes MKL's square root `form` (a kMkl* one) of in[0..n) to out, as the kernels compute it in
// their single pass (the best kernel that computes it, whichever is active); false, writing
// nothing, when no kernel of this CPU and build does. Lets callers check it against MKL itself
// before relying on it.
bool mkl_sqrt(SquareRoot form, std::int64_t n, const float* in, float* out);
bool mkl_sqrt(SquareRoot form, std::int64_t n, const double* in, double* out);

// Whether the float32 and float64 updates write through a block on the stack: where a buffer the
// update writes starts a little above one it reads (kAuto: up to kWriteShadowBytes, modulo 2 MiB),
// always, or never. The same bits either way; tests switch it to run both loops.
enum class WriteStaging { kAuto = 0, kAlways = 1, kNever = 2 };
void set_write_staging(WriteStaging mode);
WriteStaging write_staging();
// Parses "auto", "always" or "never"; throws std::invalid_argument for anything else.
WriteStaging parse_write_staging(const std::string& mode);

// Whether the float32 and float64 updates (and those of 16-bit parameters with float32 state, and
// the roofline kernel) run in two passes per block, the state's buffers then the parameter's
// (kAuto: on AMD's Zen to Zen 4 cores, whose L1 data cache can evict the parameter's line and the
// state's for each other; see two_pass_blocks in kernel.cpp), always, or never. The same bits
// either way; tests switch it to run both loops. kAlways also keeps the pairs of buffers a pass
// writes apart where they would evict each other on a Zen 4 core (with_written_pairs_apart), on any
// CPU, so that tests run that path everywhere.
enum class SplitWrites { kAuto = 0, kAlways = 1, kNever = 2 };
void set_split_writes(SplitWrites mode);
SplitWrites split_writes();
// Parses "auto", "always" or "never"; throws std::invalid_argument for anything else.
SplitWrites parse_split_writes(const std::string& mode);

// Threads used by step(): the value given to set_num_threads, else OpenMP's default (which honours
// OMP_NUM_THREADS). set_num_threads(0) returns to OpenMP's default.
void set_num_threads(int num_threads);
int get_num_threads();
// The count given to set_num_threads, or 0 when none is set (OpenMP's default applies).
int requested_num_threads();

// Threads the most recent step() or roofline_step() called from this thread actually ran on (1
// when it stayed serial): lets callers and tests see that a requested count was honoured.
int last_num_threads();

// Updates running at this moment, from all caller threads. An update that starts while another
// runs stays on one thread, so concurrent callers do not oversubscribe the cores.
int updates_in_flight_now();

// OpenMP version as the _OPENMP date (e.g. 201511), or 0 when built without OpenMP.
int openmp_version();

}  // namespace rmsprop_ext
