// torch's square root, measured and installed at run time; see torch_sqrt.h.
#include "binding/torch_sqrt.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

#include "core/kernels.h"

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
std::atomic<bool> installed{false};
std::atomic<SquareRoot> root_f32{SquareRoot::kIeee};
std::atomic<SquareRoot> root_f64{SquareRoot::kIeee};

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

namespace {
// Every form by its Python name, in the order the probe tries MKL's.
constexpr std::pair<SquareRoot, const char*> kSquareRootNames[] = {
    {SquareRoot::kIeee, "ieee"},
    {SquareRoot::kMklAvx512, "mkl_avx512"},
    {SquareRoot::kMklAvx2, "mkl_avx2"},
    {SquareRoot::kMklSse42, "mkl_sse42"},
    {SquareRoot::kMklPortable, "mkl_portable"},
    {SquareRoot::kOutside, "outside"},
};
}  // namespace

SquareRoot parse_square_root(const std::string& name, const char* argument) {
  std::string choices;
  for (const auto& [root, root_name] : kSquareRootNames) {
    if (name == root_name) {
      return root;
    }
    choices += std::string(choices.empty() ? "'" : ", '") + root_name + "'";
  }
  throw py::value_error(std::string(argument) + " must be one of " + choices + ", got '" + name +
                        "'");
}

const char* square_root_name(SquareRoot root) {
  for (const auto& [form, name] : kSquareRootNames) {
    if (form == root) {
      return name;
    }
  }
  return "?";
}

void install_torch_sqrt(const std::string& float32, const std::string& float64, std::uintptr_t vms,
                        std::uintptr_t vmd, std::uintptr_t set_local) {
  const SquareRoot f32 = parse_square_root(float32, "float32");
  const SquareRoot f64 = parse_square_root(float64, "float64");
  const bool functions = vms != 0 && vmd != 0 && set_local != 0;
  if ((f32 == SquareRoot::kOutside || f64 == SquareRoot::kOutside) && !functions) {
    throw py::value_error(
        "vms_sqrt, vmd_sqrt and set_num_threads_local are required for an 'outside' square root");
  }
  // The functions first, the forms that need them last: a reader that sees a form also sees them.
  installed.store(false, std::memory_order_release);
  set_threads_local.store(functions ? reinterpret_cast<MklSetThreadsLocal>(set_local) : nullptr,
                          std::memory_order_release);
  vms_sqrt.store(functions ? reinterpret_cast<MklSqrt<float>>(vms) : nullptr,
                 std::memory_order_release);
  vmd_sqrt.store(functions ? reinterpret_cast<MklSqrt<double>>(vmd) : nullptr,
                 std::memory_order_release);
  root_f32.store(f32, std::memory_order_release);
  root_f64.store(f64, std::memory_order_release);
  installed.store(f32 != SquareRoot::kIeee || f64 != SquareRoot::kIeee || functions,
                  std::memory_order_release);
}

bool kernel_computes_square_root(const std::string& isa, const std::string& form,
                                 const std::string& dtype) {
  const SquareRoot root = parse_square_root(form, "form");
  if (dtype != "float32" && dtype != "float64") {
    throw py::value_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
  }
  Isa level;
  try {
    level = parse_isa(isa);
  } catch (const std::invalid_argument& error) {
    throw py::value_error(error.what());
  }
  return dtype == "float32" ? computes_square_root<float>(level, root)
                            : computes_square_root<double>(level, root);
}

bool torch_sqrt_installed() { return installed.load(std::memory_order_acquire); }

bool use_torch_sqrt(Hyperparams& hp) {
  if (!torch_sqrt_installed()) {
    return false;
  }
  hp.square_root_f32 = root_f32.load(std::memory_order_acquire);
  hp.square_root_f64 = root_f64.load(std::memory_order_acquire);
  // Also the fallback of a kMkl* form in the kernels that cannot compute it.
  if (vms_sqrt.load(std::memory_order_acquire) != nullptr) {
    hp.sqrt_f32 = hp.square_root_f32 == SquareRoot::kIeee ? nullptr : &sqrt_f32;
    hp.sqrt_f64 = hp.square_root_f64 == SquareRoot::kIeee ? nullptr : &sqrt_f64;
  }
  return true;
}

namespace {
template <typename T>
py::array mkl_sqrt_as(SquareRoot form, const py::array& values) {
  const auto in = py::array_t<T, py::array::c_style>::ensure(values);
  py::array_t<T, py::array::c_style> out(
      std::vector<py::ssize_t>(in.shape(), in.shape() + in.ndim()));
  bool computed = false;
  {
    py::gil_scoped_release release;
    computed = mkl_sqrt(form, static_cast<std::int64_t>(in.size()), in.data(), out.mutable_data());
  }
  if (!computed) {
    throw std::runtime_error(std::string("no kernel of this CPU and build computes the ") +
                             square_root_name(form) + " square root of " +
                             (sizeof(T) == 4 ? "float32" : "float64"));
  }
  return std::move(out);
}
}  // namespace

py::array mkl_sqrt_of(const std::string& form_name, const py::array& values) {
  const SquareRoot form = parse_square_root(form_name, "form");
  if (form == SquareRoot::kIeee || form == SquareRoot::kOutside) {
    throw py::value_error("form must name one of MKL's square roots, got '" + form_name + "'");
  }
  if (values.dtype().is(py::dtype::of<float>())) {
    return mkl_sqrt_as<float>(form, values);
  }
  if (values.dtype().is(py::dtype::of<double>())) {
    return mkl_sqrt_as<double>(form, values);
  }
  throw py::type_error("values must be a float32 or float64 array, got " +
                       std::string(py::str(values.dtype())));
}

}  // namespace rmsprop_ext::binding
