// The optimizer's fast path: parameters and state are checked once, and each step only probes
// what can change between steps (each parameter's gradient, and whether it still owns its memory).
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "binding/checks.h"

namespace rmsprop_ext::binding {

class PreparedStep {
 public:
  // owners: the parameter objects (torch tensors); params and the state lists: numpy views of
  // their memory, checked like a rmsprop_step_many call. steps: views of each parameter's step
  // counter (one float32 or float64 element), incremented after each update. momentum and
  // centered fix which state buffers the plan holds.
  // compensations (Kahan summation's buffers, or None) and streams (the stochastic rounding's,
  // None for 0, 1, ...) as in rmsprop_step_many.
  PreparedStep(py::handle owners, py::handle params, py::handle square_avgs,
               py::handle momentum_buffers, py::handle grad_avgs, py::handle compensations,
               py::handle steps, py::handle streams, bool momentum, bool centered, bool kahan);

  // Reads owner.grad of every parameter, checks it, and runs one update over all of them.
  // `owners` is the group's parameter list as it is now. Returns false, writing nothing, when the
  // plan no longer fits: the list holds other objects, a gradient is None or not contiguous, a
  // parameter's memory moved, or the options need other state buffers (or another compensation:
  // the plan's buffers are checked for one; its stochastic rounding keeps the plan's streams).
  // Raises TypeError/ValueError, writing nothing, for a gradient that can never be used.
  bool step(py::handle owners, const Hyperparams& hp, int num_threads, bool check_only);

  std::size_t size() const { return owners_.size(); }

 private:
  // True when `owners` (a list or tuple) holds exactly the plan's parameter objects, in order.
  bool holds(py::handle owners) const;

  std::vector<py::object> owners_;
  std::vector<std::uintptr_t> owner_addresses_;
  std::vector<py::object> dtypes_;
  std::vector<py::object> layouts_;
  std::vector<std::size_t> nbytes_;
  // Per parameter, the last gradient address found clear of every written buffer (0: none yet).
  std::vector<std::uintptr_t> checked_grad_addresses_;
  Batch batch_;
  std::vector<Extent> written_;
  StepCounters steps_;
  bool momentum_;
  bool centered_;
  bool kahan_;
  // Whether stochastic rounding applies to every parameter (bfloat16 and float16 ones only).
  bool all_sixteen_bit_ = false;
};

}  // namespace rmsprop_ext::binding
