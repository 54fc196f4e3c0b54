// The functions behind the module's defs: convert, check, release the GIL, call the core.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "core/rmsprop.h"

namespace rmsprop_ext::binding {

namespace py = pybind11;

enum class Work { kUpdate, kRoofline, kCheckOnly };

struct Batch;

// Runs the checked batch (both dtypes) with the GIL released; kCheckOnly does nothing.
void run(const Batch& batch, const Hyperparams& hp, int num_threads, Work work);

// rmsprop_step: one parameter. `step` numbers the update for the bias correction and the
// stochastic rounding, whose generator takes `stream` for this parameter.
void step_one(py::handle param, py::handle grad, py::handle square_avg, py::handle momentum_buffer,
              py::handle grad_avg, py::handle compensation, const Hyperparams& hp, int num_threads,
              double step, std::uint64_t stream);

// rmsprop_step_many. `steps`, when given, holds each parameter's counter (one float element),
// which numbers its update and is incremented right after it; otherwise `step` numbers all.
// Parameter i takes stream streams[i] in the stochastic rounding's generator (i when None).
void step_many(py::handle params, py::handle grads, py::handle square_avgs,
               py::handle momentum_buffers, py::handle grad_avgs, py::handle compensations,
               const Hyperparams& hp, int num_threads, Work work, py::handle steps = py::none(),
               double step = 0.0, py::handle streams = py::none());

py::dict build_info();

}  // namespace rmsprop_ext::binding
