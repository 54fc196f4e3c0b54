// The row-sparse entry points: convert, check every argument, release the GIL, call the core.
#include "binding/sparse_entry.h"

#include <pybind11/numpy.h>

#include <string>
#include <type_traits>
#include <vector>

#include "binding/checks.h"
#include "core/sparse.h"

namespace rmsprop_ext::binding {
namespace {

std::string indexed(const char* name, std::size_t i) {
  return std::string(name) + "[" + std::to_string(i) + "]";
}

std::string shape_of(const py::array& a) {
  std::string out = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    out += (d > 0 ? ", " : "") + std::to_string(a.shape(d));
  }
  return out + (a.ndim() == 1 ? ",)" : ")");
}

// A C-contiguous numpy array of `dtype`, named `label` in the errors.
py::array contiguous_array(py::handle obj, const std::string& label, const py::dtype& dtype,
                           const char* dtype_words, bool written) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(label + " must be a numpy.ndarray, got " + type_name(obj));
  }
  auto array = py::reinterpret_borrow<py::array>(obj);
  if (!array.dtype().equal(dtype)) {
    throw py::type_error(label + " must have dtype " + dtype_words + ", got " +
                         std::string(py::str(array.dtype())));
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(label + " must be C-contiguous");
  }
  if (written && !array.writeable()) {
    throw py::value_error(label + " is read-only but is updated in place");
  }
  return array;
}

// The extras of one table beside its buffers: what the gradient holds, and the exact steps'
// bookkeeping.
struct TableExtras {
  // Each array is present only where its flag says so (a default py::array is an empty array).
  py::array indices, values, row_step, idle;
  bool has_indices = false, has_values = false, has_row_step = false;
  std::int64_t rows = 0, row_size = 0;
};

// Checks the extras of table i against its parameter `param`; `with_gradient` for steps (catching
// up takes optional indices and no values).
TableExtras check_extras(std::size_t i, const py::array& param, py::handle indices,
                         py::handle values, py::handle row_step, py::handle idle,
                         bool with_gradient) {
  TableExtras extras;
  const std::string where = indexed("params", i);
  if (param.ndim() < 1) {
    throw py::value_error(where + " is a scalar; a row-sparse step needs a table of rows");
  }
  const py::dtype dtype = param.dtype();
  if (dtype.kind() == 'c') {
    throw py::type_error(where + " is complex; row-sparse steps take real tables");
  }
  extras.rows = param.shape(0);
  extras.row_size = 1;
  for (py::ssize_t d = 1; d < param.ndim(); ++d) {
    extras.row_size *= param.shape(d);
  }
  if (!indices.is_none()) {
    extras.indices = contiguous_array(indices, indexed("indices", i), py::dtype::of<std::int64_t>(),
                                      "int64", false);
    extras.has_indices = true;
    if (extras.indices.ndim() != 1) {
      throw py::value_error(indexed("indices", i) + " must be one-dimensional, got shape " +
                            shape_of(extras.indices));
    }
  } else if (with_gradient) {
    throw py::value_error(indexed("indices", i) + " is None; a step needs the gradient's rows");
  }
  if (with_gradient) {
    extras.values = contiguous_array(values, indexed("values", i), dtype,
                                     std::string(py::str(dtype)).c_str(), false);
    extras.has_values = true;
    bool shaped =
        extras.values.ndim() == param.ndim() && extras.values.shape(0) == extras.indices.shape(0);
    for (py::ssize_t d = 1; shaped && d < param.ndim(); ++d) {
      shaped = extras.values.shape(d) == param.shape(d);
    }
    if (!shaped) {
      std::string expected = "(" + std::to_string(extras.indices.shape(0));
      for (py::ssize_t d = 1; d < param.ndim(); ++d) {
        expected += ", " + std::to_string(param.shape(d));
      }
      expected += param.ndim() == 1 ? ",)" : ")";
      throw py::value_error(indexed("values", i) + " must have shape " + expected +
                            " (one row of " + where + " per index), got " +
                            shape_of(extras.values));
    }
  }
  if (!row_step.is_none()) {
    extras.row_step = contiguous_array(row_step, indexed("row_steps", i),
                                       py::dtype::of<std::int64_t>(), "int64", true);
    extras.has_row_step = true;
    if (extras.row_step.ndim() != 1 || extras.row_step.shape(0) != extras.rows) {
      throw py::value_error(indexed("row_steps", i) + " must have shape (" +
                            std::to_string(extras.rows) + ",) (one step per row of " + where +
                            "), got " + shape_of(extras.row_step));
    }
    extras.idle =
        contiguous_array(idle, indexed("idle", i), py::dtype::of<double>(), "float64", false);
    if (extras.idle.ndim() != 2 || extras.idle.shape(0) != 4 || extras.idle.shape(1) < 1) {
      throw py::value_error(indexed("idle", i) +
                            " must have shape (4, length) with length >= 1 (the idle steps' "
                            "factors), got " +
                            shape_of(extras.idle));
    }
  } else if (!with_gradient) {
    throw py::value_error(indexed("row_steps", i) + " is None; catching rows up needs it");
  }
  return extras;
}

// Raises when an extra array shares memory with a buffer the call writes, or row_step with any
// buffer the call reads.
void check_extras_apart(const std::vector<Checked>& buffers, const std::vector<TableExtras>& all) {
  std::vector<Extent> written = written_extents(buffers);
  auto extent = [](const py::array& a) {
    const auto begin = reinterpret_cast<std::uintptr_t>(a.data());
    return std::make_pair(begin, begin + static_cast<std::uintptr_t>(a.nbytes()));
  };
  auto check = [&](bool present, const py::array& a, const std::string& label) {
    if (!present || a.nbytes() == 0) {
      return;
    }
    const auto [begin, end] = extent(a);
    if (const Extent* hit = find_overlap(written, begin, end)) {
      throw py::value_error(label + " shares memory with " + hit->buffer->label.str() +
                            ", which the step writes");
    }
  };
  for (std::size_t i = 0; i < all.size(); ++i) {
    check(all[i].has_indices, all[i].indices, indexed("indices", i));
    check(all[i].has_values, all[i].values, indexed("values", i));
    check(all[i].has_row_step, all[i].idle, indexed("idle", i));
  }
  // row_steps are written too: apart from everything above and from each other.
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (!all[i].has_row_step || all[i].row_step.nbytes() == 0) {
      continue;
    }
    check(true, all[i].row_step, indexed("row_steps", i));
    const auto [begin, end] = extent(all[i].row_step);
    for (std::size_t j = 0; j < all.size(); ++j) {
      const std::pair<bool, const py::array*> others[] = {
          {all[j].has_indices, &all[j].indices},
          {all[j].has_values, &all[j].values},
          {all[j].has_row_step, &all[j].idle},
          {all[j].has_row_step && j != i, &all[j].row_step}};
      for (const auto& [present, other] : others) {
        if (!present || other->nbytes() == 0) {
          continue;
        }
        const auto [other_begin, other_end] = extent(*other);
        if (begin < other_end && other_begin < end) {
          throw py::value_error(indexed("row_steps", i) + " shares memory with another argument");
        }
      }
    }
  }
}

template <typename P, typename S>
SparseRows<P, S> sparse_rows(const ParamBuffers<P, S>& table, const TableExtras& extras,
                             double step) {
  SparseRows<P, S> rows;
  rows.table = table;
  rows.table.step = step;
  rows.row_size = extras.row_size;
  if (extras.has_indices) {
    rows.indices = static_cast<const std::int64_t*>(extras.indices.data());
    rows.count = extras.indices.shape(0);
  }
  if (extras.has_values) {
    rows.values = static_cast<const P*>(extras.values.data());
  }
  if (extras.has_row_step) {
    rows.row_step = static_cast<std::int64_t*>(const_cast<void*>(extras.row_step.data()));
    const auto* idle = static_cast<const double*>(extras.idle.data());
    const std::int64_t length = extras.idle.shape(1);
    rows.idle = {idle, idle + length, idle + 2 * length, idle + 3 * length, length};
  }
  return rows;
}

// The table buffers of `params` (no gradients) gathered and checked, with their extras.
struct Tables {
  Batch batch;
  std::vector<TableExtras> extras;
  StepCounters counters;
};

Tables gather_tables(py::handle params, py::handle square_avgs, py::handle momentum_buffers,
                     py::handle grad_avgs, py::handle compensations, py::handle indices,
                     py::handle values, py::handle row_steps, py::handle idle,
                     const Hyperparams& hp, py::handle steps, py::handle streams,
                     bool with_gradient) {
  std::vector<std::vector<py::handle>> objects(kRoleCount);
  objects[kParam] = as_items(params, kParam, 0, false);
  const std::size_t n = objects[kParam].size();
  objects[kSquareAvg] = as_items(square_avgs, kSquareAvg, n, true);
  gather_state_lists(objects, momentum_buffers, grad_avgs, compensations, hp, n);
  auto per_table = [&](py::handle obj, const char* name) {
    if (obj.is_none()) {
      return std::vector<py::handle>(n, py::none());
    }
    return sequence_items(obj, name, "arrays or None", n, true);
  };
  const std::vector<py::handle> index_items = per_table(indices, "indices");
  const std::vector<py::handle> value_items = per_table(values, "values");
  const std::vector<py::handle> row_step_items = per_table(row_steps, "row_steps");
  const std::vector<py::handle> idle_items = per_table(idle, "idle");

  Tables tables;
  gather(objects, /*single=*/false, /*with_grads=*/false, hp, tables.batch,
         stream_list(streams, n));
  // gather has checked each params[i] (an array, of a dtype the core takes).
  for (std::size_t i = 0; i < n; ++i) {
    auto param = py::reinterpret_borrow<py::array>(objects[kParam][i]);
    tables.extras.push_back(check_extras(i, param, index_items[i], value_items[i],
                                         row_step_items[i], idle_items[i], with_gradient));
  }
  check_extras_apart(tables.batch.buffers, tables.extras);
  const std::vector<Extent> written = written_extents(tables.batch.buffers);
  tables.counters = step_counters(steps, n, &written);
  return tables;
}

// Calls f(rows) with table i's SparseRows, numbered `step`.
template <typename F>
void visit_rows(Tables& tables, std::size_t i, double step, F&& f) {
  tables.batch.visit(i, [&](auto& table) { f(sparse_rows(table, tables.extras[i], step)); });
}

}  // namespace

void sparse_step_many(py::handle params, py::handle square_avgs, py::handle momentum_buffers,
                      py::handle grad_avgs, py::handle compensations, py::handle indices,
                      py::handle values, py::handle row_steps, py::handle idle,
                      const Hyperparams& hp, int num_threads, bool check_only, py::handle steps,
                      double step, py::handle streams, bool roofline) {
  Tables tables = gather_tables(params, square_avgs, momentum_buffers, grad_avgs, compensations,
                                indices, values, row_steps, idle, hp, steps, streams, true);
  const std::size_t n = tables.extras.size();
  std::vector<double> numbers(n, step);
  for (std::size_t i = 0; i < n && !steps.is_none(); ++i) {
    numbers[i] = tables.counters.counters[i].value() + 1.0;
  }
  // Every table checked (indices in range, rows not idle too long) before any is written.
  std::string problem = check_hyperparams(hp);
  for (std::size_t i = 0; i < n && problem.empty(); ++i) {
    if (numbers[i] < 1.0) {
      problem = "a row-sparse step needs step numbers >= 1, got " + std::to_string(numbers[i]);
      break;
    }
    visit_rows(tables, i, numbers[i], [&](const auto& rows) {
      const std::string found = check_sparse_rows(rows);
      if (!found.empty()) {
        problem = indexed("params", i) + ": " + found;
      }
    });
  }
  if (!problem.empty()) {
    throw py::value_error(problem);
  }
  if (check_only) {
    return;
  }
  {
    py::gil_scoped_release release;
    for (std::size_t i = 0; i < n; ++i) {
      visit_rows(tables, i, numbers[i], [&](const auto& rows) {
        if (roofline) {
          roofline_sparse_step(&rows, 1, hp, num_threads);
        } else {
          sparse_step(&rows, 1, hp, num_threads);
        }
      });
    }
  }
  if (!roofline) {
    tables.counters.increment();
  }
}

void catch_up_many(py::handle params, py::handle square_avgs, py::handle momentum_buffers,
                   py::handle grad_avgs, py::handle compensations, py::handle row_steps,
                   py::handle idle, py::handle indices, std::int64_t min_idle,
                   const Hyperparams& hp, int num_threads, py::handle steps, double step,
                   py::handle streams) {
  Tables tables = gather_tables(params, square_avgs, momentum_buffers, grad_avgs, compensations,
                                indices, py::none(), row_steps, idle, hp, steps, streams, false);
  const std::size_t n = tables.extras.size();
  std::vector<double> numbers(n, step);
  for (std::size_t i = 0; i < n && !steps.is_none(); ++i) {
    numbers[i] = tables.counters.counters[i].value();  // the steps that have run
  }
  // Every table checked before any is written.
  std::string problem = check_hyperparams(hp);
  for (std::size_t i = 0; i < n && problem.empty(); ++i) {
    visit_rows(tables, i, numbers[i], [&](const auto& rows) {
      const std::string found = check_catch_up(rows, min_idle);
      if (!found.empty()) {
        problem = indexed("params", i) + ": " + found;
      }
    });
  }
  if (!problem.empty()) {
    throw py::value_error(problem);
  }
  py::gil_scoped_release release;
  for (std::size_t i = 0; i < n; ++i) {
    visit_rows(tables, i, numbers[i],
               [&](const auto& rows) { catch_up_rows(&rows, 1, hp, min_idle, num_threads); });
  }
}

}  // namespace rmsprop_ext::binding
