// The functions behind the module's defs: convert, check, release the GIL, call the core.
#include "binding/entry_points.h"

#include <string>
#include <vector>

#include "binding/checks.h"
#include "core/isa.h"
#include "core/rmsprop.h"

namespace rmsprop_ext::binding {

void run(const Batch& batch, const Hyperparams& hp, int num_threads, Work work) {
  // Checked when hp was built, but the active kernel may have changed since (a square root only
  // the avx512 kernel computes).
  const std::string problem = check_hyperparams(hp);
  if (!problem.empty()) {
    throw py::value_error(problem);
  }
  if (work == Work::kCheckOnly) {
    return;
  }
  py::gil_scoped_release release;
  batch.for_each_list([&](const auto& list) {
    if (list.empty()) {
      return;
    }
    if (work == Work::kRoofline) {
      roofline_step(list.data(), list.size(), hp, num_threads);
    } else {
      step(list.data(), list.size(), hp, num_threads);
    }
  });
}

void step_one(py::handle param, py::handle grad, py::handle square_avg, py::handle momentum_buffer,
              py::handle grad_avg, py::handle compensation, const Hyperparams& hp, int num_threads,
              double step, std::uint64_t stream) {
  std::vector<std::vector<py::handle>> objects = {{param},           {grad},     {square_avg},
                                                  {momentum_buffer}, {grad_avg}, {compensation}};
  Batch batch;
  gather(objects, /*single=*/true, /*with_grads=*/true, hp, batch, {stream});
  number_updates(batch, hp, step);
  run(batch, hp, num_threads, Work::kUpdate);
}

void step_many(py::handle params, py::handle grads, py::handle square_avgs,
               py::handle momentum_buffers, py::handle grad_avgs, py::handle compensations,
               const Hyperparams& hp, int num_threads, Work work, py::handle steps, double step,
               py::handle streams) {
  std::vector<std::vector<py::handle>> objects(kRoleCount);
  objects[kParam] = as_items(params, kParam, 0, false);
  const std::size_t n = objects[kParam].size();
  objects[kGrad] = as_items(grads, kGrad, n, true);
  objects[kSquareAvg] = as_items(square_avgs, kSquareAvg, n, true);
  gather_state_lists(objects, momentum_buffers, grad_avgs, compensations, hp, n);
  Batch batch;
  gather(objects, /*single=*/false, /*with_grads=*/true, hp, batch, stream_list(streams, n));
  const std::vector<Extent> written = written_extents(batch.buffers);
  const StepCounters counters = step_counters(steps, n, &written);
  if (steps.is_none()) {
    if (work != Work::kRoofline) {  // the roofline kernel reads no step number
      number_updates(batch, hp, step);
    }
  } else {
    counters.number_updates(batch);
  }
  run(batch, hp, num_threads, work);
  if (work == Work::kUpdate) {
    counters.increment();
  }
}

py::dict build_info() {
  auto names = [](const std::vector<Isa>& isas) {
    py::list out;
    for (auto isa : isas) {
      out.append(isa_name(isa));
    }
    return out;
  };
  py::dict info;
  info["isa_compiled"] = names(compiled_isas());
  info["isa_cpu"] = names(cpu_isas());
  info["isa_available"] = names(available_isas());
  info["isa_active"] = isa_name(active_isa());
  info["avx512_bf16"] = cpu_has_avx512_bf16();
  // Zen to Zen 4: the float32/float64 loops run in two passes per block, the pairs of buffers a
  // pass writes kept apart where they would evict each other (kernel.cpp).
  info["two_pass_loops"] = cpu_has_zen_l1_utags();
  info["openmp"] = openmp_version();
  info["num_threads"] = get_num_threads();
  info["compiler"] = __VERSION__;
  return info;
}

}  // namespace rmsprop_ext::binding
