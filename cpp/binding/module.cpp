// The Python module rmsprop_ext._core: definitions and docstrings only; the work is in
// entry_points.cpp and prepared_step.cpp, the checks in checks.cpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "binding/entry_points.h"
#include "binding/prepared_step.h"
#include "core/isa.h"
#include "core/rmsprop.h"

namespace py = pybind11;
using rmsprop_ext::binding::PreparedStep;
using rmsprop_ext::binding::step_many;
using rmsprop_ext::binding::step_one;
using rmsprop_ext::binding::Work;

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

  m.def(
      "rmsprop_step_many",
      [](py::handle params, py::handle grads, py::handle square_avgs, py::handle momentum_buffers,
         py::handle grad_avgs, double lr, double alpha, double eps, double weight_decay,
         double momentum, bool centered, bool maximize, bool eps_in_sqrt,
         bool decoupled_weight_decay, int num_threads, bool check_only, py::handle steps) {
        step_many(params, grads, square_avgs, momentum_buffers, grad_avgs, lr, alpha, eps,
                  weight_decay, momentum, centered, maximize, eps_in_sqrt, decoupled_weight_decay,
                  num_threads, check_only ? Work::kCheckOnly : Work::kUpdate, steps);
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"),
      py::arg("momentum_buffers") = py::none(), py::arg("grad_avgs") = py::none(), py::kw_only(),
      py::arg("lr"), py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
      py::arg("centered"), py::arg("maximize"), py::arg("eps_in_sqrt"),
      py::arg("decoupled_weight_decay"), py::arg("num_threads") = 0, py::arg("check_only") = false,
      py::arg("steps") = py::none(),
      R"doc(The fused RMSProp step over lists of numpy arrays, in one call.

float32 and float64 parameters may be mixed across items; within an item every buffer must have
the param's dtype and shape. All items are checked before any is written. With check_only=True
the call only checks, so several calls can all be checked before the first one writes.)doc");

  m.def(
      "roofline_step_many",
      [](py::handle params, py::handle grads, py::handle square_avgs, py::handle momentum_buffers,
         py::handle grad_avgs, double momentum, bool centered, int num_threads) {
        step_many(params, grads, square_avgs, momentum_buffers, grad_avgs, 0.0, 0.0, 0.0, 0.0,
                  momentum, centered, false, false, false, num_threads, Work::kRoofline);
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"),
      py::arg("momentum_buffers") = py::none(), py::arg("grad_avgs") = py::none(), py::kw_only(),
      py::arg("momentum") = 0.0, py::arg("centered") = false, py::arg("num_threads") = 0,
      R"doc(The memory roofline of rmsprop_step_many: the same buffers read and written (momentum > 0
adds momentum_buffers, centered adds grad_avgs) on the same threads, with one add per buffer
instead of the RMSProp arithmetic. It writes the buffers back unchanged (for finite grads), so it
can be timed on the same buffers as the real update.)doc");

  py::class_<PreparedStep>(m, "PreparedStep", R"doc(The optimizer's fast path over one param group.

Built from the parameter tensors and numpy views of them and their state, all checked once;
step() then reads each parameter's .grad, checks it, and updates all of them in one native call,
returning False (and writing nothing) when the parameters or their gradients no longer fit.)doc")
      .def(py::init<py::handle, py::handle, py::handle, py::handle, py::handle, py::handle, bool,
                    bool>(),
           py::arg("owners"), py::arg("params"), py::arg("square_avgs"),
           py::arg("momentum_buffers").none(true), py::arg("grad_avgs").none(true),
           py::arg("steps"), py::kw_only(), py::arg("momentum"), py::arg("centered"))
      .def("step", &PreparedStep::step, py::arg("owners"), py::kw_only(), py::arg("lr"),
           py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
           py::arg("centered"), py::arg("maximize"), py::arg("eps_in_sqrt"),
           py::arg("decoupled_weight_decay"), py::arg("num_threads") = 0,
           py::arg("check_only") = false)
      .def("__len__", &PreparedStep::size);

  m.def("set_num_threads", &rmsprop_ext::set_num_threads, py::arg("num_threads"),
        R"doc(Threads for the update; 0 returns to OpenMP's default (OMP_NUM_THREADS).)doc");
  m.def(
      "last_num_threads", &rmsprop_ext::last_num_threads,
      R"doc(Threads the most recent update from this thread actually ran on (1 when serial).)doc");
  m.def("_updates_in_flight", &rmsprop_ext::updates_in_flight_now,
        R"doc(Updates running right now, from all threads (for tests and diagnostics).)doc");
  m.def("requested_num_threads", &rmsprop_ext::requested_num_threads,
        R"doc(The count given to set_num_threads, or 0 when none is set.)doc");
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
      "build_info", &rmsprop_ext::binding::build_info,
      R"doc(Compiled, CPU-supported, available and active instruction sets; OpenMP version; threads.)doc");
}
