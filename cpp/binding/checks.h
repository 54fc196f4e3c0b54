// Argument checks shared by the binding's entry points: every buffer is checked, and checked
// against the others, before the GIL is released and anything is written.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/rmsprop.h"

namespace rmsprop_ext::binding {

namespace py = pybind11;

enum Role { kParam, kGrad, kSquareAvg, kMomentumBuffer, kGradAvg, kRoleCount };

// Names an argument the way the caller wrote it: "grad" for rmsprop_step, "grads[3]" for the list
// form. Built only when an error is raised.
struct Label {
  Role role;
  py::ssize_t index;  // -1 for the single-parameter call
  std::string str() const;
};

std::string type_name(py::handle obj);

// "params", "grads", ...: the name of a role's list argument.
const char* plural_name(Role role);

// One buffer as it will be used, with what is needed to check it against the others.
struct Checked {
  py::array array;
  Label label;
  bool written;
};

// Checks one buffer on its own and, when `param` is given, against the parameter it belongs to.
Checked check_buffer(py::handle obj, Label label, bool written, const py::array* param);

// A buffer's bytes in memory, for overlap checks.
struct Extent {
  std::uintptr_t begin, end;
  const Checked* buffer;
};

// Raises when a buffer that is written shares memory with any other buffer in `buffers`.
void check_no_overlap(const std::vector<Checked>& buffers);

// Non-empty extents of the written buffers, sorted by address (they are disjoint once
// check_no_overlap has passed); and the written buffer overlapping [begin, end), or nullptr.
std::vector<Extent> written_extents(const std::vector<Checked>& buffers);
const Extent* find_overlap(const std::vector<Extent>& sorted_written, std::uintptr_t begin,
                           std::uintptr_t end);

// Converts and checks the hyperparameters; ValueError naming the bad one.
Hyperparams make_hyperparams(double lr, double alpha, double eps, double weight_decay,
                             double momentum, bool centered, bool maximize, bool eps_in_sqrt,
                             bool decoupled_weight_decay, bool lr_in_momentum, bool nesterov,
                             bool bias_correction, bool fused_multiply_add, bool torch_sqrt);

// Everything an update needs, gathered and checked while holding the GIL.
struct Batch {
  std::vector<Checked> buffers;
  std::vector<ParamBuffers<float>> f32;
  std::vector<ParamBuffers<double>> f64;
  // For each parameter, in order: whether it is in f32 (else f64), and its index there.
  std::vector<bool> is_f32;
  std::vector<std::size_t> slot;

  // Sets ParamBuffers::step of parameter i, wherever its buffers are.
  void set_step(std::size_t i, double step) {
    if (is_f32[i]) {
      f32[slot[i]].step = step;
    } else {
      f64[slot[i]].step = step;
    }
  }
};

// Checks the buffers of each parameter (objects[role][i]) and fills the batch; throws before any
// memory is written. With with_grads false the grads role is skipped and the grad pointers stay
// null (the prepared step fills them on every call).
void gather(const std::vector<std::vector<py::handle>>& objects, bool single, bool with_grads,
            const Hyperparams& hp, Batch& batch);

// Step counters to add one to right after an update, in the same native call, so that no Python
// exception (a KeyboardInterrupt) can land between a parameter's update and its counter.
struct StepCounters {
  // One parameter's counter: a float32 or a float64 element (the other pointer is null).
  struct Counter {
    float* f32 = nullptr;
    double* f64 = nullptr;
    double value() const { return f32 != nullptr ? double{*f32} : *f64; }
  };
  std::vector<Counter> counters;  // in parameter order
  std::vector<py::object> keep_alive;

  void increment() const;
  // Sets each parameter's ParamBuffers::step to its counter + 1, the number of the coming update.
  void number_updates(Batch& batch) const;
};

// Sets every parameter's ParamBuffers::step to `step`; ValueError when the bias correction needs a
// step number (>= 1) and none was given.
void number_updates(Batch& batch, const Hyperparams& hp, double step);

// Checks `steps` (None, or `expected` one-element float32/float64 arrays, each writeable and,
// when `written` is given, apart from those buffers) before anything is written.
StepCounters step_counters(py::handle steps, std::size_t expected,
                           const std::vector<Extent>* written = nullptr);

// A list or tuple's items; TypeError/ValueError naming `role` when it is not one or when its
// length is not `expected` (with check_len).
std::vector<py::handle> as_items(py::handle obj, Role role, std::size_t expected, bool check_len);

}  // namespace rmsprop_ext::binding
