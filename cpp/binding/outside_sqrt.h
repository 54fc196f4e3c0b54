// torch's square root, borrowed at run time: torch with MKL computes sqrt with MKL's vector math
// (vmsSqrt/vmdSqrt in high-accuracy mode), whose results can be 1 ulp below the IEEE square root.
// Python finds those two functions in the already loaded libtorch_cpu and hands over their
// addresses; the extension never links torch or MKL.
#pragma once

#include <cstdint>

#include "core/rmsprop.h"

namespace rmsprop_ext::binding {

// Installs MKL's vmsSqrt and vmdSqrt (addresses of functions with MKL's LP64 signature
// void(int n, const T* a, T* r, std::int64_t mode)) and mkl_set_num_threads_local (int(int)),
// which keeps each call on its calling thread; zeros uninstall.
void install_mkl_sqrt(std::uintptr_t vms_sqrt, std::uintptr_t vmd_sqrt,
                      std::uintptr_t set_num_threads_local);

bool mkl_sqrt_installed();

// Points hp's square roots at the installed functions; false when none are installed.
bool use_mkl_sqrt(Hyperparams& hp);

}  // namespace rmsprop_ext::binding
