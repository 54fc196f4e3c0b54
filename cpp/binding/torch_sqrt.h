// torch's square root: torch with MKL computes sqrt with MKL's vector math (vmsSqrt/vmdSqrt in
// high-accuracy mode), whose results can be 1 ulp from the IEEE square root, differently on each
// of MKL's code paths. Python measures which square root torch.sqrt gives in this process, per
// dtype: the IEEE one, one of MKL's that the kernels compute themselves in the same pass
// (mkl_sqrt.h), or another; for the last, and as the fallback of the kernels that cannot compute
// a form, it finds MKL's two functions in the already loaded libtorch_cpu and hands over their
// addresses. The extension never links torch or MKL.
#pragma once

#include <cstdint>
#include <string>

#include "binding/checks.h"
#include "core/rmsprop.h"

namespace rmsprop_ext::binding {

// Parses "ieee", "mkl_avx512", "mkl_avx2", "mkl_sse42", "mkl_portable" or "outside"; ValueError
// naming `argument` and the choices otherwise.
SquareRoot parse_square_root(const std::string& name, const char* argument);

// Installs torch's square root for each dtype. The MKL functions (addresses of vmsSqrt and
// vmdSqrt with MKL's LP64 signature void(int n, const T* a, T* r, std::int64_t mode), and
// mkl_set_num_threads_local, int(int), which keeps each call on its calling thread) are required
// for "outside", and are what the kernels that cannot compute an "mkl_*" form call for it
// (without them, those kernels refuse such an update); zeros with "ieee" for both uninstall.
void install_torch_sqrt(const std::string& float32, const std::string& float64,
                        std::uintptr_t vms_sqrt, std::uintptr_t vmd_sqrt,
                        std::uintptr_t set_num_threads_local);

bool torch_sqrt_installed();

// Whether the kernel of `isa` ("scalar", "avx2", ...) computes the square root `form` of `dtype`
// ("float32" or "float64") in its own pass; ValueError for names it does not know.
bool kernel_computes_square_root(const std::string& isa, const std::string& form,
                                 const std::string& dtype);

// Sets hp's square roots to torch's; false when none has been installed.
bool use_torch_sqrt(Hyperparams& hp);

// The Python name of a form, as parse_square_root reads it.
const char* square_root_name(SquareRoot root);

// MKL's square root `form` ("mkl_avx512", ...) of a float32 or float64 array, as the kernels
// compute it, in a new array; ValueError for another form, TypeError for other dtypes,
// RuntimeError when no kernel of this CPU and build computes the form for the dtype.
py::array mkl_sqrt_of(const std::string& form, const py::array& values);

}  // namespace rmsprop_ext::binding
