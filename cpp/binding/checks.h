// Argument checks shared by the binding's entry points: every buffer is checked, and checked
// against the others, before the GIL is released and anything is written.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/rmsprop.h"

namespace rmsprop_ext::binding {

namespace py = pybind11;

enum Role { kParam, kGrad, kSquareAvg, kMomentumBuffer, kGradAvg, kCompensation, kRoleCount };

// Names an argument the way the caller wrote it: "grad" for rmsprop_step, "grads[3]" for the list
// form. Built only when an error is raised.
struct Label {
  Role role;
  py::ssize_t index;  // -1 for the single-parameter call
  // The exponent bytes of 8-bit state, passed as the second item of a (codes, exponents) pair.
  bool exponents = false;
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

// Checks one buffer on its own and, when `param` is given, against the parameter it belongs to:
// its shape, and its dtype against `same_dtype_as` (the param's, or the first state buffer's).
Checked check_buffer(py::handle obj, Label label, bool written, const py::array* param,
                     const Checked* same_dtype_as = nullptr);

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
                             bool bias_correction, bool fused_multiply_add, bool torch_sqrt,
                             const std::string& compensation, std::uint64_t seed,
                             bool round_each_op, std::int64_t torch_add_block, int torch_threads);

// "none", "kahan" or "stochastic".
const char* compensation_name(Compensation compensation);

// The buffers of every parameter, one list per (parameter, state) storage pair of the core.
using PairLists = std::tuple<
    std::vector<ParamBuffers<float, float>>, std::vector<ParamBuffers<double, double>>,
    std::vector<ParamBuffers<float, bfloat16>>, std::vector<ParamBuffers<bfloat16, bfloat16>>,
    std::vector<ParamBuffers<bfloat16, float>>, std::vector<ParamBuffers<float16, float16>>,
    std::vector<ParamBuffers<float16, float>>, std::vector<ParamBuffers<float, code8>>,
    std::vector<ParamBuffers<bfloat16, code8>>, std::vector<ParamBuffers<float16, code8>>>;

// Everything an update needs, gathered and checked while holding the GIL.
struct Batch {
  std::vector<Checked> buffers;
  PairLists lists;
  // For each parameter, in order: which list holds its buffers, and where in it.
  struct Place {
    std::size_t list, slot;
  };
  std::vector<Place> places;

  // Calls f(list) for every list.
  template <typename F>
  void for_each_list(F&& f) const {
    std::apply([&](const auto&... list) { (f(list), ...); }, lists);
  }
  // Calls f(buffers) with parameter i's ParamBuffers, wherever they are.
  template <typename F>
  void visit(std::size_t i, F&& f) {
    visit_list(places[i], f, std::make_index_sequence<std::tuple_size_v<PairLists>>{});
  }
  void set_step(std::size_t i, double step) {
    visit(i, [&](auto& b) { b.step = step; });
  }
  // Whether any parameter has 8-bit state, whose stochastic rounding reads the step number.
  bool has_quantized_state() const {
    return !std::get<std::vector<ParamBuffers<float, code8>>>(lists).empty() ||
           !std::get<std::vector<ParamBuffers<bfloat16, code8>>>(lists).empty() ||
           !std::get<std::vector<ParamBuffers<float16, code8>>>(lists).empty();
  }

 private:
  template <typename F, std::size_t... K>
  void visit_list(Place place, F& f, std::index_sequence<K...>) {
    ((K == place.list ? f(std::get<K>(lists)[place.slot]) : void()), ...);
  }
};

// Checks the buffers of each parameter (objects[role][i]) and fills the batch; throws before any
// memory is written. With with_grads false the grads role is skipped and the grad pointers stay
// null (the prepared step fills them on every call). Parameter i gets the stochastic rounding's
// stream streams[i], or i when `streams` is empty.
void gather(const std::vector<std::vector<py::handle>>& objects, bool single, bool with_grads,
            const Hyperparams& hp, Batch& batch, const std::vector<std::uint64_t>& streams = {});

// The stochastic rounding's streams: empty for None, else one int >= 0 per parameter.
std::vector<std::uint64_t> stream_list(py::handle streams, std::size_t expected);

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

// Whether the update reads the step number: the bias correction and the stochastic roundings do.
bool reads_step_number(const Batch& batch, const Hyperparams& hp);

// Sets every parameter's ParamBuffers::step to `step`; ValueError when the bias correction or a
// stochastic rounding needs a step number (>= 1) and none was given.
void number_updates(Batch& batch, const Hyperparams& hp, double step);

// Checks `steps` (None, or `expected` one-element float32/float64 arrays, each writeable and,
// when `written` is given, apart from those buffers) before anything is written.
StepCounters step_counters(py::handle steps, std::size_t expected,
                           const std::vector<Extent>* written = nullptr);

// objects[kMomentumBuffer], [kGradAvg] and [kCompensation] from the lists the options need (each
// of n items; ValueError when a needed one is None); the others stay empty.
void gather_state_lists(std::vector<std::vector<py::handle>>& objects, py::handle momentum_buffers,
                        py::handle grad_avgs, py::handle compensations, const Hyperparams& hp,
                        std::size_t n);

// A list or tuple's items; TypeError/ValueError naming `role` when it is not one or when its
// length is not `expected` (with check_len).
std::vector<py::handle> as_items(py::handle obj, Role role, std::size_t expected, bool check_len);

// The same for any list argument: `name` in the messages, `what` its items ("arrays", "ints").
std::vector<py::handle> sequence_items(py::handle obj, const char* name, const char* what,
                                       std::size_t expected, bool check_len);

}  // namespace rmsprop_ext::binding
