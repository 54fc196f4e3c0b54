// Row-sparse RMSProp: the step of a table (an embedding) whose gradient holds a few rows, at a cost
// that follows those rows. A row no gradient touched still changes in the dense step: its running
// averages decay by alpha, and its momentum buffer and (with decoupled weight decay) its parameter
// keep moving. Exact steps bring such a row up to date, in closed form, when it is next touched
// (or when asked: flush, a lookup, a row idle too long); lazy steps leave it as it was.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "rmsprop.h"

namespace rmsprop_ext {

// What k steps with no gradient (and no coupled weight decay) did to a row, for each k < length:
// entry k of each array covers the k most recent steps. With x the parameter and b the momentum
// buffer before them:
//   square_avg, grad_avg <- state_scale[k] * themselves     (the product of alpha)
//   b <- buffer_scale[k] * b                                  (the product of momentum)
//   x <- param_scale[k] * x - buffer_into_param[k] * b        (the products of 1 - lr * wd of
//                                                              decoupled weight decay; the sum of
//                                                              what each step took from b)
// Entry 0 is (1, 1, 1, 0). The caller keeps the arrays and shifts in each step's factors.
struct IdleSteps {
  const double* state_scale = nullptr;
  const double* buffer_scale = nullptr;
  const double* param_scale = nullptr;
  const double* buffer_into_param = nullptr;
  std::int64_t length = 0;
};

// One table and the rows of its gradient. `table` holds every row (table.size = rows * row_size,
// table.grad unused) and table.step numbers this update; the 8-bit state's blocks must not
// straddle rows (row_size a multiple of kQuantBlock).
template <typename P, typename S>
struct SparseRows {
  ParamBuffers<P, S> table;
  std::int64_t row_size = 0;
  // `count` row numbers in any order, repeats allowed, and count * row_size gradient values, row i
  // of them belonging to row indices[i]; the values of a repeated row are summed (in order).
  const std::int64_t* indices = nullptr;
  const P* values = nullptr;
  std::int64_t count = 0;
  // Exact steps: for each row, the number of the last step it is up to date with, which each step
  // sets; nullptr for lazy steps.
  std::int64_t* row_step = nullptr;
  IdleSteps idle;
};

// The rows of a table: table.size / row_size.
template <typename P, typename S>
std::int64_t row_count(const SparseRows<P, S>& rows) {
  return rows.row_size > 0 ? rows.table.size / rows.row_size : 0;
}

// Empty when the rows can be stepped: every index within the table, the table made of whole rows
// (and whole 8-bit blocks per row), and with row_step every touched row up to date with a step
// before table.step and idle fewer than idle.length steps. Otherwise a message naming the first
// problem (the step functions throw std::invalid_argument with it, before writing anything).
template <typename P, typename S>
std::string check_sparse_rows(const SparseRows<P, S>& rows);

// One RMSProp step of the touched rows of each table, in place: each distinct row, its gradient
// rows summed, is first brought up to date with step table.step - 1 (exact steps) and then takes
// the dense update of rmsprop.h with that gradient (the same kernel, on the row's elements), and
// its row_step becomes table.step. The rows are spread over the threads (num_threads as in
// step()); no buffer of the table's size is made.
template <typename P, typename S>
void sparse_step(const SparseRows<P, S>* items, std::size_t count, const Hyperparams& hp,
                 int num_threads = 0);

// The memory traffic of sparse_step on the same rows (their gradients summed, the same buffers read
// and written on the same threads) with roofline_step's one add per buffer instead of the update:
// the roofline sparse_step is measured against. No catch-up; row_step is left as it is.
template <typename P, typename S>
void roofline_sparse_step(const SparseRows<P, S>* items, std::size_t count, const Hyperparams& hp,
                          int num_threads = 0);

// Brings rows up to date with step table.step (a step that has already run; the idle arrays cover
// the steps up to it): the rows named by indices (values unused; repeats allowed), or every row
// when indices is null, in both cases only those idle for at least min_idle steps. Their row_step
// becomes table.step. Throws std::invalid_argument, writing nothing, where check_catch_up finds a
// problem.
template <typename P, typename S>
void catch_up_rows(const SparseRows<P, S>* items, std::size_t count, const Hyperparams& hp,
                   std::int64_t min_idle = 1, int num_threads = 0);

// Empty when catch_up_rows can run: the rows' shape as for check_sparse_rows, row_step given, the
// indices (when given) within the table, and every row it would catch up behind table.step by
// fewer steps than the idle factors cover (none ahead of it).
template <typename P, typename S>
std::string check_catch_up(const SparseRows<P, S>& rows, std::int64_t min_idle);

}  // namespace rmsprop_ext
