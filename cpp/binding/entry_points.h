// The functions behind the module's defs: convert, check, release the GIL, call the core.
#pragma once

#include <pybind11/pybind11.h>

#include "core/rmsprop.h"

namespace rmsprop_ext::binding {

namespace py = pybind11;

enum class Work { kUpdate, kRoofline, kCheckOnly };

struct Batch;

// Runs the checked batch (both dtypes) with the GIL released; kCheckOnly does nothing.
void run(const Batch& batch, const Hyperparams& hp, int num_threads, Work work);

// rmsprop_step: one parameter. `step` numbers the update for the bias correction.
void step_one(py::handle param, py::handle grad, py::handle square_avg, py::handle momentum_buffer,
              py::handle grad_avg, const Hyperparams& hp, int num_threads, double step);

// rmsprop_step_many. `steps`, when given, holds each parameter's counter (one float element),
// which numbers its update and is incremented right after it; otherwise `step` numbers all.
void step_many(py::handle params, py::handle grads, py::handle square_avgs,
               py::handle momentum_buffers, py::handle grad_avgs, const Hyperparams& hp,
               int num_threads, Work work, py::handle steps = py::none(), double step = 0.0);

py::dict build_info();

}  // namespace rmsprop_ext::binding
