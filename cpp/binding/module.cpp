// The Python module rmsprop_ext._core: definitions and docstrings only; the work is in
// entry_points.cpp and prepared_step.cpp, the checks in checks.cpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "binding/checks.h"
#include "binding/entry_points.h"
#include "binding/prepared_step.h"
#include "binding/sparse_entry.h"
#include "binding/torch_sqrt.h"
#include "core/isa.h"
#include "core/rmsprop.h"

namespace py = pybind11;
using rmsprop_ext::Hyperparams;
using rmsprop_ext::binding::PreparedStep;
using rmsprop_ext::binding::step_many;
using rmsprop_ext::binding::step_one;
using rmsprop_ext::binding::Work;

PYBIND11_MODULE(_core, m) {
  m.doc() = "Compiled core of rmsprop_ext. Use the public API in rmsprop_ext instead.";

  rmsprop_ext::apply_isa_from_environment();

  py::class_<Hyperparams>(m, "Hyperparams", R"doc(The options of one update, checked once.

Built with keyword arguments only; ValueError naming the bad one. Read-only afterwards.)doc")
      .def(py::init(&rmsprop_ext::binding::make_hyperparams), py::kw_only(), py::arg("lr"),
           py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
           py::arg("centered"), py::arg("maximize"), py::arg("eps_in_sqrt"),
           py::arg("decoupled_weight_decay"), py::arg("lr_in_momentum"), py::arg("nesterov"),
           py::arg("bias_correction"), py::arg("fused_multiply_add"), py::arg("torch_sqrt"),
           py::arg("compensation") = "none", py::arg("seed") = 0, py::arg("round_each_op") = false,
           py::arg("torch_add_block") = 0, py::arg("torch_threads") = 1)
      .def_readonly("lr", &Hyperparams::lr)
      .def_readonly("alpha", &Hyperparams::alpha)
      .def_readonly("eps", &Hyperparams::eps)
      .def_readonly("weight_decay", &Hyperparams::weight_decay)
      .def_readonly("momentum", &Hyperparams::momentum)
      .def_readonly("centered", &Hyperparams::centered)
      .def_readonly("maximize", &Hyperparams::maximize)
      .def_readonly("eps_in_sqrt", &Hyperparams::eps_in_sqrt)
      .def_readonly("decoupled_weight_decay", &Hyperparams::decoupled_weight_decay)
      .def_readonly("lr_in_momentum", &Hyperparams::lr_in_momentum)
      .def_readonly("nesterov", &Hyperparams::nesterov)
      .def_readonly("bias_correction", &Hyperparams::bias_correction)
      .def_readonly("fused_multiply_add", &Hyperparams::fused_multiply_add)
      .def_readonly("round_each_op", &Hyperparams::round_each_op)
      .def_readonly("torch_add_block", &Hyperparams::torch_add_block)
      .def_readonly("torch_threads", &Hyperparams::torch_threads)
      .def_property_readonly("compensation",
                             [](const Hyperparams& hp) {
                               return rmsprop_ext::binding::compensation_name(hp.compensation);
                             })
      .def_readonly("seed", &Hyperparams::seed)
      .def_property_readonly("square_root_f32",
                             [](const Hyperparams& hp) {
                               return rmsprop_ext::binding::square_root_name(hp.square_root_f32);
                             })
      .def_property_readonly("square_root_f64", [](const Hyperparams& hp) {
        return rmsprop_ext::binding::square_root_name(hp.square_root_f64);
      });

  m.def("_install_torch_sqrt", &rmsprop_ext::binding::install_torch_sqrt, py::kw_only(),
        py::arg("float32"), py::arg("float64"), py::arg("vms_sqrt"), py::arg("vmd_sqrt"),
        py::arg("set_num_threads_local"),
        R"doc(Installs torch's square root for updates built with torch_sqrt=True, per dtype:
'ieee'; one of MKL's code paths, computed by the kernels that have its instructions in their
single pass: 'mkl_avx512' (avx512; float32 and float64), 'mkl_avx2', 'mkl_sse42' or
'mkl_portable' (avx2 and avx512; float32); or 'outside' (MKL's vmsSqrt / vmdSqrt, function
addresses found in torch's own library, called on blocks on one thread each through
mkl_set_num_threads_local; also what the other kernels use for an 'mkl_*' form). 'ieee' for both
with zero addresses uninstalls.)doc");
  m.def("_kernel_computes_square_root", &rmsprop_ext::binding::kernel_computes_square_root,
        py::arg("isa"), py::arg("form"), py::arg("dtype"),
        R"doc(Whether the kernel of `isa` computes the square root `form` ('ieee', 'mkl_avx512',
...) of `dtype` ('float32' or 'float64') in its own pass, rather than calling MKL's function.)doc");
  m.def("_torch_sqrt_installed", &rmsprop_ext::binding::torch_sqrt_installed,
        R"doc(True when _install_torch_sqrt has installed torch's square root.)doc");
  m.def("_mkl_sqrt", &rmsprop_ext::binding::mkl_sqrt_of, py::arg("form"), py::arg("values"),
        R"doc(One of MKL's square roots ('mkl_avx512', 'mkl_avx2', 'mkl_sse42', 'mkl_portable') of a
float32 or float64 array, as the kernels compute it (the best kernel here that has the form,
whichever is active), in a new array. RuntimeError where no kernel computes it.)doc");

  m.def("rmsprop_step", &step_one, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
        py::arg("momentum_buffer") = py::none(), py::arg("grad_avg") = py::none(),
        py::arg("compensation") = py::none(), py::kw_only(), py::arg("hyperparams"),
        py::arg("num_threads") = 0, py::arg("step") = 0.0, py::arg("stream") = 0,
        R"doc(One fused RMSProp step on C-contiguous numpy arrays, in place.

`step` numbers the update (1 for the first) for the bias correction and the stochastic rounding,
whose generator also takes `stream`. bfloat16 buffers are ml_dtypes bfloat16 or uint16 bit
patterns; the state may be float32 for 16-bit parameters and bfloat16 for float32 ones.
`compensation` is Kahan summation's buffer (the param's dtype). All arguments are checked before
any buffer is written; the GIL is released during the update.)doc");

  m.def(
      "rmsprop_step_many",
      [](py::handle params, py::handle grads, py::handle square_avgs, py::handle momentum_buffers,
         py::handle grad_avgs, py::handle compensations, const Hyperparams& hp, int num_threads,
         bool check_only, py::handle steps, double step, py::handle streams) {
        step_many(params, grads, square_avgs, momentum_buffers, grad_avgs, compensations, hp,
                  num_threads, check_only ? Work::kCheckOnly : Work::kUpdate, steps, step, streams);
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"),
      py::arg("momentum_buffers") = py::none(), py::arg("grad_avgs") = py::none(),
      py::arg("compensations") = py::none(), py::kw_only(), py::arg("hyperparams"),
      py::arg("num_threads") = 0, py::arg("check_only") = false, py::arg("steps") = py::none(),
      py::arg("step") = 0.0, py::arg("streams") = py::none(),
      R"doc(The fused RMSProp step over lists of numpy arrays, in one call.

Dtypes may be mixed across items; within an item grad (and compensation) have the param's dtype,
the state one dtype allowed for it, all the param's shape. All items are checked before any is
written. With check_only=True the call only checks, so several calls can all be checked before
the first one writes. `steps` (one-element float arrays, one per parameter) number each
parameter's update and are incremented by the same call; without them `step` numbers all of
them. Parameter i takes stream streams[i] (default i) in the stochastic rounding.)doc");

  m.def("rmsprop_sparse_step_many", &rmsprop_ext::binding::sparse_step_many, py::arg("params"),
        py::arg("square_avgs"), py::arg("momentum_buffers") = py::none(),
        py::arg("grad_avgs") = py::none(), py::arg("compensations") = py::none(), py::kw_only(),
        py::arg("indices"), py::arg("values"), py::arg("row_steps") = py::none(),
        py::arg("idle") = py::none(), py::arg("hyperparams"), py::arg("num_threads") = 0,
        py::arg("check_only") = false, py::arg("steps") = py::none(), py::arg("step") = 0.0,
        py::arg("streams") = py::none(), py::arg("roofline") = false,
        R"doc(The row-sparse RMSProp step of tables (embeddings), in place, in one call.

Table i's gradient is indices[i] (int64 row numbers, any order, repeats summed) and values[i] (one
row of params[i] per index, its dtype). Each touched row takes the dense step; with row_steps[i]
(int64, one per row: the last step each row is up to date with) a row idle since is first brought
through its idle steps in closed form, from idle[i] (float64, shape (4, length): the products of
alpha, of momentum and of 1 - lr * weight_decay over the k most recent steps, and what the
momentum buffer took from the parameter), and its row_step becomes this step's number. Without
row_steps idle rows stay as they are (lazy). `steps`/`step` and `streams` as for
rmsprop_step_many. Everything is checked before anything is written. roofline=True moves the
same rows' bytes with the roofline kernel instead (nothing caught up, counted or changed).)doc");
  m.def("rmsprop_catch_up_rows", &rmsprop_ext::binding::catch_up_many, py::arg("params"),
        py::arg("square_avgs"), py::arg("momentum_buffers") = py::none(),
        py::arg("grad_avgs") = py::none(), py::arg("compensations") = py::none(), py::kw_only(),
        py::arg("row_steps"), py::arg("idle"), py::arg("indices") = py::none(),
        py::arg("min_idle") = 1, py::arg("hyperparams"), py::arg("num_threads") = 0,
        py::arg("steps") = py::none(), py::arg("step") = 0.0, py::arg("streams") = py::none(),
        R"doc(Brings the rows of tables idle for at least min_idle steps up to date with the steps
that have run (each table's counter in `steps`, not incremented, else `step`), as
rmsprop_sparse_step_many does before its update: the rows named by indices[i] (None: every row).)doc");

  m.def(
      "roofline_step_many",
      [](py::handle params, py::handle grads, py::handle square_avgs, py::handle momentum_buffers,
         py::handle grad_avgs, py::handle compensations, double momentum, bool centered,
         int num_threads) {
        Hyperparams traffic;
        traffic.momentum = momentum;
        traffic.centered = centered;
        if (!compensations.is_none()) {
          traffic.compensation = rmsprop_ext::Compensation::kKahan;
        }
        const std::string problem = rmsprop_ext::check_hyperparams(traffic);
        if (!problem.empty()) {
          throw py::value_error(problem);
        }
        step_many(params, grads, square_avgs, momentum_buffers, grad_avgs, compensations, traffic,
                  num_threads, Work::kRoofline);
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"),
      py::arg("momentum_buffers") = py::none(), py::arg("grad_avgs") = py::none(),
      py::arg("compensations") = py::none(), py::kw_only(), py::arg("momentum") = 0.0,
      py::arg("centered") = false, py::arg("num_threads") = 0,
      R"doc(The memory roofline of rmsprop_step_many: the same buffers read and written (momentum > 0
adds momentum_buffers, centered adds grad_avgs, compensations those of Kahan summation) on the
same threads, with one add per buffer
instead of the RMSProp arithmetic. It writes the buffers back unchanged (for finite grads), so it
can be timed on the same buffers as the real update.)doc");

  py::class_<PreparedStep>(m, "PreparedStep", R"doc(The optimizer's fast path over one param group.

Built from the parameter tensors and numpy views of them and their state, all checked once;
step() then reads each parameter's .grad, checks it, and updates all of them in one native call,
returning False (and writing nothing) when the parameters or their gradients no longer fit.)doc")
      .def(py::init<py::handle, py::handle, py::handle, py::handle, py::handle, py::handle,
                    py::handle, py::handle, bool, bool, bool>(),
           py::arg("owners"), py::arg("params"), py::arg("square_avgs"),
           py::arg("momentum_buffers").none(true), py::arg("grad_avgs").none(true),
           py::arg("compensations").none(true), py::arg("steps"), py::arg("streams").none(true),
           py::kw_only(), py::arg("momentum"), py::arg("centered"), py::arg("kahan") = false)
      .def("step", &PreparedStep::step, py::arg("owners"), py::kw_only(), py::arg("hyperparams"),
           py::arg("num_threads") = 0, py::arg("check_only") = false)
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
  m.def("_set_bf16_instructions", &rmsprop_ext::set_bf16_instructions, py::arg("enabled"),
        R"doc(Whether the avx512 kernel rounds to bfloat16 with AVX512-BF16 instructions (the same
bits as without). Returns False, changing nothing, when enabling on a CPU without them.)doc");
  m.def("_bf16_instructions", &rmsprop_ext::bf16_instructions,
        R"doc(True when the avx512 kernel uses AVX512-BF16's conversion.)doc");
  m.def(
      "_set_write_staging",
      [](const std::string& mode) {
        rmsprop_ext::set_write_staging(rmsprop_ext::parse_write_staging(mode));
      },
      py::arg("mode"),
      R"doc(Whether float32/float64 updates write through a block on the stack: where a written buffer
starts just above a read one ("auto"), "always" or "never". The same bits either way.)doc");
  m.def(
      "_set_split_writes",
      [](const std::string& mode) {
        rmsprop_ext::set_split_writes(rmsprop_ext::parse_split_writes(mode));
      },
      py::arg("mode"),
      R"doc(Whether updates run in two passes per block, the state's then the parameter's: on AMD's
Zen to Zen 4 cores ("auto"), "always" (and the written pairs kept apart on any CPU) or "never".
The same bits either way.)doc");
  m.def(
      "_cpu_has_zen_l1_utags", &rmsprop_ext::cpu_has_zen_l1_utags,
      R"doc(True on AMD's Zen to Zen 4 cores, whose L1 data cache picks ways by a hash of the address.)doc");
  m.def(
      "build_info", &rmsprop_ext::binding::build_info,
      R"doc(Compiled, CPU-supported, available and active instruction sets; OpenMP version; threads.)doc");
}
