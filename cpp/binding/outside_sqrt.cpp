// torch's square root, borrowed at run time; see outside_sqrt.h.
#include "binding/outside_sqrt.h"

#include <algorithm>
#include <atomic>
#include <limits>

namespace rmsprop_ext::binding {
namespace {

template <typename T>
using MklSqrt = void (*)(int n, const T* a, T* r, std::int64_t mode);

// The mode torch passes (aten/src/ATen/cpu/vml.h): VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE.
constexpr std::int64_t kTorchVmlMode = 0x2 | 0x140000 | 0x100;

// mkl_set_num_threads_local (C entry MKL_Set_Num_Threads_Local): the calling thread's MKL thread
// count; returns the previous one.
using MklSetThreadsLocal = int (*)(int);

std::atomic<MklSqrt<float>> vms_sqrt{nullptr};
std::atomic<MklSqrt<double>> vmd_sqrt{nullptr};
std::atomic<MklSetThreadsLocal> set_threads_local{nullptr};

template <typename T>
void call_in_int_chunks(MklSqrt<T> fn, std::int64_t n, const T* in, T* out) {
  // One block is far too small to share: once torch.set_num_threads has set MKL's count, a call
  // from outside a parallel region would start a team every time (measured: 16,384 elements in
  // 16 blocks, 34 us instead of 10 us). The update already runs on the threads it should.
  const MklSetThreadsLocal set_local = set_threads_local.load(std::memory_order_acquire);
  const int previous = set_local(1);
  constexpr std::int64_t kMaxInt = std::numeric_limits<int>::max();
  for (std::int64_t done = 0; done < n; done += kMaxInt) {
    fn(static_cast<int>(std::min(kMaxInt, n - done)), in + done, out + done, kTorchVmlMode);
  }
  set_local(previous);
}

void sqrt_f32(std::int64_t n, const float* in, float* out) {
  call_in_int_chunks(vms_sqrt.load(std::memory_order_acquire), n, in, out);
}

void sqrt_f64(std::int64_t n, const double* in, double* out) {
  call_in_int_chunks(vmd_sqrt.load(std::memory_order_acquire), n, in, out);
}

}  // namespace

void install_mkl_sqrt(std::uintptr_t vms, std::uintptr_t vmd, std::uintptr_t set_local) {
  const bool all = vms != 0 && vmd != 0 && set_local != 0;
  // The thread-count setter first: a reader that sees a square root also sees it.
  set_threads_local.store(all ? reinterpret_cast<MklSetThreadsLocal>(set_local) : nullptr,
                          std::memory_order_release);
  vms_sqrt.store(all ? reinterpret_cast<MklSqrt<float>>(vms) : nullptr, std::memory_order_release);
  vmd_sqrt.store(all ? reinterpret_cast<MklSqrt<double>>(vmd) : nullptr, std::memory_order_release);
}

bool mkl_sqrt_installed() {
  return vms_sqrt.load(std::memory_order_acquire) != nullptr &&
         vmd_sqrt.load(std::memory_order_acquire) != nullptr;
}

bool use_mkl_sqrt(Hyperparams& hp) {
  if (!mkl_sqrt_installed()) {
    return false;
  }
  hp.sqrt_f32 = &sqrt_f32;
  hp.sqrt_f64 = &sqrt_f64;
  return true;
}

}  // namespace rmsprop_ext::binding
