// torch's square root: torch with MKL computes sqrt with MKL's vector math (vmsSqrt/vmdSqrt in
// high-accuracy mode), whose results can be 1 ulp below the IEEE square root. Python measures
// which square root torch.sqrt gives in this process, per dtype: the IEEE one, MKL's AVX-512 one
// (which the avx512 kernel computes itself, in the same pass), or another; for the last, and as
// the fallback of the other kernels, it finds MKL's two functions in the already loaded
// libtorch_cpu and hands over their addresses. The extension never links torch or MKL.
#pragma once

#include <cstdint>
#include <string>

#include "binding/checks.h"
#include "core/rmsprop.h"

namespace rmsprop_ext::binding {

// Parses "ieee", "mkl_avx512" or "outside"; ValueError naming `argument` otherwise.
SquareRoot parse_square_root(const std::string& name, const char* argument);

// Installs torch's square root for each dtype. The MKL functions (addresses of vmsSqrt and
// vmdSqrt with MKL's LP64 signature void(int n, const T* a, T* r, std::int64_t mode), and
// mkl_set_num_threads_local, int(int), which keeps each call on its calling thread) are required
// for "outside", and are what kernels other than avx512 call for "mkl_avx512" (without them,
// those kernels refuse such an update); zeros with "ieee" for both uninstall.
void install_torch_sqrt(const std::string& float32, const std::string& float64,
                        std::uintptr_t vms_sqrt, std::uintptr_t vmd_sqrt,
                        std::uintptr_t set_num_threads_local);

bool torch_sqrt_installed();

// Sets hp's square roots to torch's; false when none has been installed.
bool use_torch_sqrt(Hyperparams& hp);

// "ieee", "mkl_avx512" or "outside".
const char* square_root_name(SquareRoot root);

// MKL's AVX-512 square root of a float32 or float64 array, as the avx512 kernel computes it, in a
// new array; TypeError for other dtypes, RuntimeError when the CPU or build has no AVX-512.
py::array mkl_avx512_sqrt_of(const py::array& values);

}  // namespace rmsprop_ext::binding
