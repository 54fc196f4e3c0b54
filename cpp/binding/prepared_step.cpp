// The optimizer's fast path; see prepared_step.h.
#include "binding/prepared_step.h"

#include <string>
#include <type_traits>

#include "binding/entry_points.h"
#include "core/rmsprop.h"

namespace rmsprop_ext::binding {
namespace {

// The step probes a handful of attributes of every parameter and gradient; interned names and
// direct C-API calls keep that near 50 ns each (obj.attr("x") would build the name every time).
struct AttributeNames {
  py::str grad{"grad"}, data_ptr{"data_ptr"}, is_contiguous{"is_contiguous"}, dtype{"dtype"},
      layout{"layout"}, is_cpu{"is_cpu"}, nbytes{"nbytes"};
};

const AttributeNames& names() {
  // Never destroyed: Python objects must not be released after the interpreter has finalized.
  static const auto* interned = new AttributeNames();
  return *interned;
}

// Reads an attribute as PyObject_GenericGetAttr would. Tensor.grad, .dtype, .layout, .is_cpu and
// .nbytes are data descriptors (getsets), which generic lookup calls without looking at the
// instance dict, so for a type that keeps the generic lookup the descriptor's getter is called
// directly: five reads per parameter per step, each about 10 ns cheaper (1000 parameters: 55 us).
// Anything else - a type with its own __getattribute__ or __getattr__, a plain class attribute -
// takes PyObject_GetAttr.
py::object get(py::handle obj, const py::str& name) {
  PyTypeObject* type = Py_TYPE(obj.ptr());
  PyObject* result = nullptr;
  PyObject* descriptor = nullptr;
  if (type->tp_getattro == PyObject_GenericGetAttr) {
    descriptor = _PyType_Lookup(type, name.ptr());  // borrowed; the type's cache makes it cheap
  }
  if (descriptor != nullptr && Py_TYPE(descriptor)->tp_descr_get != nullptr &&
      Py_TYPE(descriptor)->tp_descr_set != nullptr) {
    Py_INCREF(descriptor);  // as generic lookup does: the getter may change the type
    result =
        Py_TYPE(descriptor)->tp_descr_get(descriptor, obj.ptr(), reinterpret_cast<PyObject*>(type));
    Py_DECREF(descriptor);
  } else {
    result = PyObject_GetAttr(obj.ptr(), name.ptr());
  }
  if (result == nullptr) {
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(result);
}

py::object call(py::handle obj, const py::str& name) {
  PyObject* result = PyObject_CallMethodNoArgs(obj.ptr(), name.ptr());
  if (result == nullptr) {
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(result);
}

bool truthy(const py::object& value) {
  const int result = PyObject_IsTrue(value.ptr());
  if (result < 0) {
    throw py::error_already_set();
  }
  return result == 1;
}

std::uintptr_t address_of(py::handle tensor) {
  return call(tensor, names().data_ptr).cast<std::uintptr_t>();
}

}  // namespace

PreparedStep::PreparedStep(py::handle owners, py::handle params, py::handle square_avgs,
                           py::handle momentum_buffers, py::handle grad_avgs,
                           py::handle compensations, py::handle steps, py::handle streams,
                           bool momentum, bool centered, bool kahan)
    : momentum_(momentum), centered_(centered), kahan_(kahan) {
  Hyperparams shape_of_state;
  shape_of_state.momentum = momentum ? 1.0 : 0.0;
  shape_of_state.centered = centered;
  shape_of_state.compensation = kahan ? Compensation::kKahan : Compensation::kNone;
  std::vector<std::vector<py::handle>> objects(kRoleCount);
  objects[kParam] = as_items(params, kParam, 0, false);
  const std::size_t n = objects[kParam].size();
  const std::vector<py::handle> owner_items = as_items(owners, kParam, n, true);
  objects[kSquareAvg] = as_items(square_avgs, kSquareAvg, n, true);
  if (momentum) {
    objects[kMomentumBuffer] = as_items(momentum_buffers, kMomentumBuffer, n, true);
  }
  if (centered) {
    objects[kGradAvg] = as_items(grad_avgs, kGradAvg, n, true);
  }
  if (kahan) {
    objects[kCompensation] = as_items(compensations, kCompensation, n, true);
  }
  gather(objects, /*single=*/false, /*with_grads=*/false, shape_of_state, batch_,
         stream_list(streams, n));
  written_ = written_extents(batch_.buffers);
  // Step counters: one writeable float element each, apart from every other buffer.
  steps_ = step_counters(steps, n, &written_);
  for (std::size_t i = 0; i < n; ++i) {
    py::handle owner = owner_items[i];
    const py::array& view = py::reinterpret_borrow<py::array>(objects[kParam][i]);
    const std::uintptr_t address = address_of(owner);
    if (address != reinterpret_cast<std::uintptr_t>(view.data())) {
      throw py::value_error("params[" + std::to_string(i) + "] is not a view of its owner");
    }
    owners_.push_back(py::reinterpret_borrow<py::object>(owner));
    owner_addresses_.push_back(address);
    dtypes_.push_back(get(owner, names().dtype));
    layouts_.push_back(get(owner, names().layout));
    nbytes_.push_back(static_cast<std::size_t>(view.nbytes()));
  }
  all_sixteen_bit_ = true;
  for (std::size_t i = 0; i < n; ++i) {
    batch_.visit(i, [&](auto& b) {
      using P = std::remove_pointer_t<decltype(b.param)>;
      all_sixteen_bit_ =
          all_sixteen_bit_ && (std::is_same_v<P, bfloat16> || std::is_same_v<P, float16>);
    });
  }
  checked_grad_addresses_.assign(n, 0);
}

bool PreparedStep::holds(py::handle owners) const {
  if (!PyList_Check(owners.ptr()) && !PyTuple_Check(owners.ptr())) {
    return false;
  }
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(owners.ptr());
  if (count != static_cast<Py_ssize_t>(owners_.size())) {
    return false;
  }
  PyObject** items = PySequence_Fast_ITEMS(owners.ptr());
  for (Py_ssize_t i = 0; i < count; ++i) {
    if (items[i] != owners_[static_cast<std::size_t>(i)].ptr()) {
      return false;
    }
  }
  return true;
}

bool PreparedStep::step(py::handle owners, const Hyperparams& hp, int num_threads,
                        bool check_only) {
  const bool kahan = hp.compensation == Compensation::kKahan;
  const bool stochastic = hp.compensation == Compensation::kStochastic;
  if ((hp.momentum > 0.0) != momentum_ || hp.centered != centered_ || kahan != kahan_ ||
      (stochastic && !all_sixteen_bit_) || !holds(owners)) {
    return false;
  }
  // Keeps every gradient alive while the GIL is released, even if its owner drops it meanwhile.
  std::vector<py::object> grads;
  grads.reserve(owners_.size());
  for (std::size_t i = 0; i < owners_.size(); ++i) {
    py::handle owner = owners_[i];
    py::object grad = get(owner, names().grad);
    if (grad.is_none() || address_of(owner) != owner_addresses_[i] ||
        !truthy(call(grad, names().is_contiguous))) {
      return false;
    }
    const Label label{kGrad, static_cast<py::ssize_t>(i)};
    const py::object dtype = get(grad, names().dtype);
    const py::object layout = get(grad, names().layout);
    if (!dtype.is(dtypes_[i]) || !layout.is(layouts_[i])) {
      throw py::type_error(label.str() + " has dtype " + std::string(py::str(dtype)) +
                           " and layout " + std::string(py::str(layout)) +
                           "; it must match its parameter's");
    }
    if (!truthy(get(grad, names().is_cpu))) {
      throw py::value_error(label.str() + " is not on the CPU");
    }
    if (get(grad, names().nbytes).cast<std::size_t>() != nbytes_[i]) {
      throw py::value_error(label.str() + " does not have its parameter's size");
    }
    const std::uintptr_t begin = address_of(grad);
    // The written extents never change, so a gradient at an address already checked is clear.
    // Autograd often hands out the same addresses step after step.
    if (begin != checked_grad_addresses_[i]) {
      if (const Extent* clash = find_overlap(written_, begin, begin + nbytes_[i])) {
        throw py::value_error(label.str() + " shares memory with " + clash->buffer->label.str() +
                              ", which is updated in place");
      }
      checked_grad_addresses_[i] = begin;
    }
    batch_.visit(i, [&](auto& b) {
      using Grad = std::remove_pointer_t<decltype(b.param)>;
      b.grad = reinterpret_cast<const Grad*>(begin);
    });
    grads.push_back(std::move(grad));
  }
  if (check_only) {
    return true;
  }
  if (reads_step_number(batch_, hp)) {
    steps_.number_updates(batch_);
  }
  run(batch_, hp, num_threads, Work::kUpdate);
  steps_.increment();
  return true;
}

}  // namespace rmsprop_ext::binding
