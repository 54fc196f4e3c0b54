// Python binding of the core: converts numpy arrays to ParamBuffers, checks every argument before
// any write, releases the GIL around the update. No arithmetic lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/isa.h"
#include "core/rmsprop.h"

namespace py = pybind11;
using rmsprop_ext::Hyperparams;
using rmsprop_ext::ParamBuffers;

namespace {

// numpy's NPY_ARRAY_ALIGNED flag: elements sit at addresses that are multiples of their size.
constexpr int kNumpyAligned = 0x0100;

enum Role { kParam, kGrad, kSquareAvg, kMomentumBuffer, kGradAvg, kRoleCount };
constexpr const char* kSingularNames[kRoleCount] = {"param", "grad", "square_avg",
                                                    "momentum_buffer", "grad_avg"};
constexpr const char* kPluralNames[kRoleCount] = {"params", "grads", "square_avgs",
                                                  "momentum_buffers", "grad_avgs"};

// Names an argument the way the caller wrote it: "grad" for rmsprop_step, "grads[3]" for the list
// form. Built only when an error is raised.
struct Label {
  Role role;
  py::ssize_t index;  // -1 for the single-parameter call
  std::string str() const {
    if (index < 0) {
      return kSingularNames[role];
    }
    return std::string(kPluralNames[role]) + "[" + std::to_string(index) + "]";
  }
};

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

std::string shape_str(const py::array& a) {
  std::string out = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    out += (d > 0 ? ", " : "") + std::to_string(a.shape(d));
  }
  return out + (a.ndim() == 1 ? ",)" : ")");
}

// One buffer as it will be used, with what is needed to check it against the others.
struct Checked {
  py::array array;
  Label label;
  bool written;
};

enum class Dtype { kFloat32, kFloat64 };

Dtype dtype_of(const py::array& a, const Label& label) {
  if (a.dtype().equal(py::dtype::of<float>())) {
    return Dtype::kFloat32;
  }
  if (a.dtype().equal(py::dtype::of<double>())) {
    return Dtype::kFloat64;
  }
  throw py::type_error(label.str() +
                       " must have dtype float32 or float64 in native byte order, got " +
                       std::string(py::str(a.dtype())));
}

// Checks one buffer on its own and against the parameter it belongs to.
Checked check_buffer(py::handle obj, Label label, bool written, const py::array* param) {
  if (obj.is_none()) {
    throw py::value_error(label.str() + " is required for these options but is None");
  }
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(label.str() + " must be a numpy.ndarray, got " + type_name(obj));
  }
  auto array = py::reinterpret_borrow<py::array>(obj);
  const Dtype dtype = dtype_of(array, label);
  if (param != nullptr) {
    const Label param_label{kParam, label.index};
    if (dtype != dtype_of(*param, param_label)) {
      throw py::type_error(label.str() + " has dtype " + std::string(py::str(array.dtype())) +
                           " but " + param_label.str() + " has dtype " +
                           std::string(py::str(param->dtype())) + "; they must match");
    }
    const bool same_shape = array.ndim() == param->ndim() &&
                            std::equal(array.shape(), array.shape() + array.ndim(), param->shape());
    if (!same_shape) {
      throw py::value_error(label.str() + " has shape " + shape_str(array) + " but " +
                            param_label.str() + " has shape " + shape_str(*param) +
                            "; they must match");
    }
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(label.str() +
                          " must be C-contiguous (pass a contiguous array, e.g. "
                          "numpy.ascontiguousarray, and keep it as the state)");
  }
  if (!(array.flags() & kNumpyAligned)) {
    throw py::value_error(label.str() + " must be aligned to its element size");
  }
  if (written && !array.writeable()) {
    throw py::value_error(label.str() + " is read-only but is updated in place");
  }
  return {array, label, written};
}

// Raises when a buffer that is written shares memory with any other buffer of the call.
void check_no_overlap(const std::vector<Checked>& buffers) {
  struct Extent {
    std::uintptr_t begin, end;
    const Checked* buffer;
  };
  std::vector<Extent> extents;
  extents.reserve(buffers.size());
  for (const Checked& b : buffers) {
    const auto begin = reinterpret_cast<std::uintptr_t>(b.array.data());
    const auto bytes = static_cast<std::uintptr_t>(b.array.nbytes());
    if (bytes > 0) {
      extents.push_back({begin, begin + bytes, &b});
    }
  }
  std::sort(extents.begin(), extents.end(),
            [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  // Sweep in address order: an extent overlaps an earlier one exactly when it starts before that
  // one's end, so remembering the furthest end seen (and the furthest end of a written buffer)
  // finds every conflicting pair.
  const Extent* furthest_any = nullptr;
  const Extent* furthest_written = nullptr;
  for (const Extent& e : extents) {
    const Extent* clash = nullptr;
    if (furthest_written != nullptr && e.begin < furthest_written->end) {
      clash = furthest_written;
    } else if (e.buffer->written && furthest_any != nullptr && e.begin < furthest_any->end) {
      clash = furthest_any;
    }
    if (clash != nullptr) {
      throw py::value_error(clash->buffer->label.str() + " and " + e.buffer->label.str() +
                            " share memory; every buffer that is updated in place must be "
                            "separate from all the others");
    }
    if (furthest_any == nullptr || e.end > furthest_any->end) {
      furthest_any = &e;
    }
    if (e.buffer->written && (furthest_written == nullptr || e.end > furthest_written->end)) {
      furthest_written = &e;
    }
  }
}

Hyperparams make_hyperparams(double lr, double alpha, double eps, double weight_decay,
                             double momentum, bool centered, bool maximize, bool eps_in_sqrt,
                             bool decoupled_weight_decay) {
  Hyperparams hp;
  hp.lr = lr;
  hp.alpha = alpha;
  hp.eps = eps;
  hp.weight_decay = weight_decay;
  hp.momentum = momentum;
  hp.centered = centered;
  hp.maximize = maximize;
  hp.eps_in_sqrt = eps_in_sqrt;
  hp.decoupled_weight_decay = decoupled_weight_decay;
  const std::string problem = rmsprop_ext::check_hyperparams(hp);
  if (!problem.empty()) {
    throw py::value_error(problem);
  }
  return hp;
}

template <typename T>
T* pointer(const Checked& c) {
  return static_cast<T*>(const_cast<void*>(c.array.data()));
}

// The checked buffers of one parameter, in Role order; unused roles are absent.
struct Item {
  const Checked* role[kRoleCount] = {};
};

template <typename T>
ParamBuffers<T> to_buffers(const Item& item) {
  ParamBuffers<T> b;
  b.param = pointer<T>(*item.role[kParam]);
  b.grad = pointer<T>(*item.role[kGrad]);
  b.square_avg = pointer<T>(*item.role[kSquareAvg]);
  b.momentum_buffer =
      item.role[kMomentumBuffer] ? pointer<T>(*item.role[kMomentumBuffer]) : nullptr;
  b.grad_avg = item.role[kGradAvg] ? pointer<T>(*item.role[kGradAvg]) : nullptr;
  b.size = static_cast<std::int64_t>(item.role[kParam]->array.size());
  return b;
}

// Everything the update needs, gathered and checked while holding the GIL.
struct Batch {
  std::vector<Checked> buffers;
  std::vector<ParamBuffers<float>> f32;
  std::vector<ParamBuffers<double>> f64;
};

// Checks the buffers of each parameter (objects[role][i]) and fills the batch; throws before any
// memory is written.
void gather(const std::vector<std::vector<py::handle>>& objects, bool single, const Hyperparams& hp,
            Batch& batch) {
  const bool use_momentum = hp.momentum > 0.0;
  const std::size_t n = objects[kParam].size();
  // Reserved up front: items and `param` below point into this vector, so it must never reallocate.
  batch.buffers.reserve(n * kRoleCount);
  std::vector<Item> items(n);
  for (std::size_t i = 0; i < n; ++i) {
    const py::ssize_t index = single ? -1 : static_cast<py::ssize_t>(i);
    auto add = [&](Role role, bool written, const py::array* param) {
      batch.buffers.push_back(check_buffer(objects[role][i], {role, index}, written, param));
      items[i].role[role] = &batch.buffers.back();
    };
    add(kParam, true, nullptr);
    const py::array& param = batch.buffers.back().array;
    add(kGrad, false, &param);
    add(kSquareAvg, true, &param);
    if (use_momentum) {
      add(kMomentumBuffer, true, &param);
    }
    if (hp.centered) {
      add(kGradAvg, true, &param);
    }
  }
  check_no_overlap(batch.buffers);
  for (const Item& item : items) {
    if (item.role[kParam]->array.dtype().equal(py::dtype::of<float>())) {
      batch.f32.push_back(to_buffers<float>(item));
    } else {
      batch.f64.push_back(to_buffers<double>(item));
    }
  }
}

void run(const Batch& batch, const Hyperparams& hp, int num_threads) {
  py::gil_scoped_release release;
  if (!batch.f32.empty()) {
    rmsprop_ext::step(batch.f32.data(), batch.f32.size(), hp, num_threads);
  }
  if (!batch.f64.empty()) {
    rmsprop_ext::step(batch.f64.data(), batch.f64.size(), hp, num_threads);
  }
}

std::vector<py::handle> as_items(py::handle obj, Role role, std::size_t expected, bool check_len) {
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj)) {
    throw py::type_error(std::string(kPluralNames[role]) +
                         " must be a list or tuple of arrays, got " + type_name(obj));
  }
  auto seq = py::reinterpret_borrow<py::sequence>(obj);
  if (check_len && seq.size() != expected) {
    throw py::value_error(std::string(kPluralNames[role]) + " has " + std::to_string(seq.size()) +
                          " items but params has " + std::to_string(expected) +
                          "; they must have the same length");
  }
  std::vector<py::handle> out;
  out.reserve(seq.size());
  for (py::handle item : seq) {
    out.push_back(item);
  }
  return out;
}

void step_one(py::handle param, py::handle grad, py::handle square_avg, py::handle momentum_buffer,
              py::handle grad_avg, double lr, double alpha, double eps, double weight_decay,
              double momentum, bool centered, bool maximize, bool eps_in_sqrt,
              bool decoupled_weight_decay, int num_threads) {
  const Hyperparams hp = make_hyperparams(lr, alpha, eps, weight_decay, momentum, centered,
                                          maximize, eps_in_sqrt, decoupled_weight_decay);
  std::vector<std::vector<py::handle>> objects = {
      {param}, {grad}, {square_avg}, {momentum_buffer}, {grad_avg}};
  Batch batch;
  gather(objects, /*single=*/true, hp, batch);
  run(batch, hp, num_threads);
}

void step_many(py::handle params, py::handle grads, py::handle square_avgs,
               py::handle momentum_buffers, py::handle grad_avgs, double lr, double alpha,
               double eps, double weight_decay, double momentum, bool centered, bool maximize,
               bool eps_in_sqrt, bool decoupled_weight_decay, int num_threads, bool check_only) {
  const Hyperparams hp = make_hyperparams(lr, alpha, eps, weight_decay, momentum, centered,
                                          maximize, eps_in_sqrt, decoupled_weight_decay);
  std::vector<std::vector<py::handle>> objects(kRoleCount);
  objects[kParam] = as_items(params, kParam, 0, false);
  const std::size_t n = objects[kParam].size();
  objects[kGrad] = as_items(grads, kGrad, n, true);
  objects[kSquareAvg] = as_items(square_avgs, kSquareAvg, n, true);
  auto optional_list = [&](py::handle obj, Role role, bool needed, const char* option) {
    if (!needed) {
      return;
    }
    if (obj.is_none()) {
      throw py::value_error(std::string(kPluralNames[role]) + " is required when " + option +
                            " but is None");
    }
    objects[role] = as_items(obj, role, n, true);
  };
  optional_list(momentum_buffers, kMomentumBuffer, hp.momentum > 0.0, "momentum > 0");
  optional_list(grad_avgs, kGradAvg, hp.centered, "centered=True");
  Batch batch;
  gather(objects, /*single=*/false, hp, batch);
  if (!check_only) {
    run(batch, hp, num_threads);
  }
}

py::dict build_info() {
  auto names = [](const std::vector<rmsprop_ext::Isa>& isas) {
    py::list out;
    for (auto isa : isas) {
      out.append(rmsprop_ext::isa_name(isa));
    }
    return out;
  };
  py::dict info;
  info["isa_compiled"] = names(rmsprop_ext::compiled_isas());
  info["isa_cpu"] = names(rmsprop_ext::cpu_isas());
  info["isa_available"] = names(rmsprop_ext::available_isas());
  info["isa_active"] = rmsprop_ext::isa_name(rmsprop_ext::active_isa());
  info["openmp"] = rmsprop_ext::openmp_version();
  info["num_threads"] = rmsprop_ext::get_num_threads();
  info["compiler"] = __VERSION__;
  return info;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "Compiled core of rmsprop_ext. Use the public API in rmsprop_ext instead.";

  rmsprop_ext::apply_isa_from_environment();

  m.def("rmsprop_step", &step_one, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
        py::arg("momentum_buffer") = py::none(), py::arg("grad_avg") = py::none(), py::kw_only(),
        py::arg("lr"), py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("momentum"), py::arg("centered"), py::arg("maximize"), py::arg("eps_in_sqrt"),
        py::arg("decoupled_weight_decay"), py::arg("num_threads") = 0,
        R"doc(One fused RMSProp step on C-contiguous numpy arrays, in place.

All arguments are checked before any buffer is written; the GIL is released during the update.)doc");

  m.def("rmsprop_step_many", &step_many, py::arg("params"), py::arg("grads"),
        py::arg("square_avgs"), py::arg("momentum_buffers") = py::none(),
        py::arg("grad_avgs") = py::none(), py::kw_only(), py::arg("lr"), py::arg("alpha"),
        py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"),
        py::arg("maximize"), py::arg("eps_in_sqrt"), py::arg("decoupled_weight_decay"),
        py::arg("num_threads") = 0, py::arg("check_only") = false,
        R"doc(The fused RMSProp step over lists of numpy arrays, in one call.

float32 and float64 parameters may be mixed across items; within an item every buffer must have
the param's dtype and shape. All items are checked before any is written. With check_only=True
the call only checks, so several calls can all be checked before the first one writes.)doc");

  m.def("set_num_threads", &rmsprop_ext::set_num_threads, py::arg("num_threads"),
        R"doc(Threads for the update; 0 returns to OpenMP's default (OMP_NUM_THREADS).)doc");
  m.def("get_num_threads", &rmsprop_ext::get_num_threads,
        R"doc(Threads the update uses when a call does not name a count.)doc");
  m.def(
      "set_isa",
      [](const std::string& name) { rmsprop_ext::set_active_isa(rmsprop_ext::parse_isa(name)); },
      py::arg("name"),
      R"doc(Selects the kernel: "scalar", "avx2" or "avx512". Raises ValueError for an unknown name and
RuntimeError for a level this CPU or build lacks.)doc");
  m.def(
      "get_isa", [] { return std::string(rmsprop_ext::isa_name(rmsprop_ext::active_isa())); },
      R"doc(The kernel in use.)doc");
  m.def(
      "build_info", &build_info,
      R"doc(Compiled, CPU-supported, available and active instruction sets; OpenMP version; threads.)doc");
}
