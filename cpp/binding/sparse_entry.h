// The row-sparse functions behind the module's defs (see core/sparse.h).
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "core/rmsprop.h"

namespace rmsprop_ext::binding {

namespace py = pybind11;

// rmsprop_sparse_step_many: the rows of each table's gradient (indices[i], values[i]) updated, idle
// rows caught up first where row_steps[i] is given (with the idle steps' factors idle[i]). Step
// numbers as for step_many. With `roofline` the same rows' memory traffic instead (nothing caught
// up or counted).
void sparse_step_many(py::handle params, py::handle square_avgs, py::handle momentum_buffers,
                      py::handle grad_avgs, py::handle compensations, py::handle indices,
                      py::handle values, py::handle row_steps, py::handle idle,
                      const Hyperparams& hp, int num_threads, bool check_only, py::handle steps,
                      double step, py::handle streams, bool roofline = false);

// rmsprop_catch_up_rows: rows idle at least min_idle steps brought up to date with the steps that
// have run (each table's counter in `steps`, else `step`): those named by indices[i], or all.
void catch_up_many(py::handle params, py::handle square_avgs, py::handle momentum_buffers,
                   py::handle grad_avgs, py::handle compensations, py::handle row_steps,
                   py::handle idle, py::handle indices, std::int64_t min_idle,
                   const Hyperparams& hp, int num_threads, py::handle steps, double step,
                   py::handle streams);

}  // namespace rmsprop_ext::binding
