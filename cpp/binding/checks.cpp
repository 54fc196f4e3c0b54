// Argument checks shared by the binding's entry points.
#include "binding/checks.h"

#include <pybind11/complex.h>

#include <algorithm>
#include <complex>

#include "binding/torch_sqrt.h"

namespace rmsprop_ext::binding {
namespace {

template <typename P, typename S, std::size_t K = 0>
constexpr std::size_t index_of_list() {
  using List = std::tuple_element_t<K, PairLists>;
  if constexpr (std::is_same_v<typename List::value_type, ParamBuffers<P, S>>) {
    return K;
  } else {
    return index_of_list<P, S, K + 1>();
  }
}

// numpy's NPY_ARRAY_ALIGNED flag: elements sit at addresses that are multiples of their size.
constexpr int kNumpyAligned = 0x0100;

// As the functional API names its arguments (the Kahan buffer: compensation_buffer).
constexpr const char* kSingularNames[kRoleCount] = {
    "param", "grad", "square_avg", "momentum_buffer", "grad_avg", "compensation_buffer"};
constexpr const char* kPluralNames[kRoleCount] = {
    "params", "grads", "square_avgs", "momentum_buffers", "grad_avgs", "compensation_buffers"};

std::string shape_str(const py::array& a) {
  std::string out = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    out += (d > 0 ? ", " : "") + std::to_string(a.shape(d));
  }
  return out + (a.ndim() == 1 ? ",)" : ")");
}

// Complex numbers are updated as pairs of reals, as torch.optim.RMSprop does (view_as_real).
// bfloat16 arrives as ml_dtypes' bfloat16 or as uint16 bit patterns (numpy has no bfloat16 of its
// own; torch's bfloat16 tensors are passed as .view(torch.uint16)).
// uint8 arrays are the codes of 8-bit state (see core/quantized.h).
enum class Dtype { kFloat32, kFloat64, kComplex64, kComplex128, kBFloat16, kFloat16, kCode8 };

const char* dtype_name(Dtype d) {
  constexpr const char* kNames[] = {"float32",  "float64", "complex64",          "complex128",
                                    "bfloat16", "float16", "8-bit (uint8 codes)"};
  return kNames[static_cast<int>(d)];
}

Dtype dtype_of(const py::array& a, const Label& label) {
  const py::dtype dtype = a.dtype();
  if (dtype.equal(py::dtype::of<float>())) {
    return Dtype::kFloat32;
  }
  if (dtype.equal(py::dtype::of<double>())) {
    return Dtype::kFloat64;
  }
  if (dtype.equal(py::dtype::of<std::complex<float>>())) {
    return Dtype::kComplex64;
  }
  if (dtype.equal(py::dtype::of<std::complex<double>>())) {
    return Dtype::kComplex128;
  }
  if (dtype.equal(py::dtype("float16"))) {
    return Dtype::kFloat16;
  }
  if (dtype.equal(py::dtype::of<std::uint8_t>())) {
    return Dtype::kCode8;
  }
  const bool native_order = dtype.attr("byteorder").cast<std::string>() != ">";
  if (native_order &&
      (dtype.equal(py::dtype::of<std::uint16_t>()) ||
       (dtype.itemsize() == 2 && dtype.attr("name").cast<std::string>() == "bfloat16"))) {
    return Dtype::kBFloat16;
  }
  throw py::type_error(label.str() +
                       " must have dtype float32, float64, complex64, complex128, bfloat16 "
                       "(ml_dtypes, or uint16 bit patterns), float16 in native byte order, or "
                       "uint8 (the codes of 8-bit state), got " +
                       std::string(py::str(dtype)));
}

bool is_complex(Dtype d) { return d == Dtype::kComplex64 || d == Dtype::kComplex128; }
bool is_sixteen_bit(Dtype d) { return d == Dtype::kBFloat16 || d == Dtype::kFloat16; }

bool is_state(Role role) {
  return role == kSquareAvg || role == kMomentumBuffer || role == kGradAvg;
}

// The state dtypes a parameter dtype can have: its own, float32 for 16-bit parameters, bfloat16
// for float32 ones, and 8-bit for both.
bool state_dtype_allowed(Dtype param, Dtype state) {
  const bool takes_code8 = param == Dtype::kFloat32 || is_sixteen_bit(param);
  return state == param || (is_sixteen_bit(param) && state == Dtype::kFloat32) ||
         (param == Dtype::kFloat32 && state == Dtype::kBFloat16) ||
         (takes_code8 && state == Dtype::kCode8);
}

std::string allowed_states(Dtype param) {
  if (is_sixteen_bit(param)) {
    return std::string(dtype_name(param)) + ", float32 or 8-bit";
  }
  if (param == Dtype::kFloat32) {
    return "float32, bfloat16 or 8-bit";
  }
  return dtype_name(param);
}

template <typename T>
T* pointer(const Checked& c) {
  return static_cast<T*>(const_cast<void*>(c.array.data()));
}

// The checked buffers of one parameter, in Role order; unused roles are absent. 8-bit state
// buffers have their exponent bytes too.
struct Item {
  const Checked* role[kRoleCount] = {};
  const Checked* exponents[kRoleCount] = {};
};

std::int8_t* exponents_of(const Item& item, Role role) {
  return item.exponents[role] ? pointer<std::int8_t>(*item.exponents[role]) : nullptr;
}

template <typename P, typename S>
ParamBuffers<P, S> to_buffers(const Item& item, std::uint64_t stream) {
  ParamBuffers<P, S> b;
  b.param = pointer<P>(*item.role[kParam]);
  b.grad = item.role[kGrad] ? pointer<P>(*item.role[kGrad]) : nullptr;
  b.square_avg = pointer<S>(*item.role[kSquareAvg]);
  b.momentum_buffer =
      item.role[kMomentumBuffer] ? pointer<S>(*item.role[kMomentumBuffer]) : nullptr;
  b.grad_avg = item.role[kGradAvg] ? pointer<S>(*item.role[kGradAvg]) : nullptr;
  b.compensation = item.role[kCompensation] ? pointer<P>(*item.role[kCompensation]) : nullptr;
  b.square_avg_exponents = exponents_of(item, kSquareAvg);
  b.momentum_buffer_exponents = exponents_of(item, kMomentumBuffer);
  b.grad_avg_exponents = exponents_of(item, kGradAvg);
  const py::array& param = item.role[kParam]->array;
  b.complex_pairs = is_complex(dtype_of(param, item.role[kParam]->label));
  b.size = static_cast<std::int64_t>(param.size()) * (b.complex_pairs ? 2 : 1);
  b.stream = stream;
  return b;
}

// Appends the item's buffers to the list of its storage pair and records where.
template <typename P, typename S>
void add_to(Batch& batch, const Item& item, std::uint64_t stream) {
  constexpr std::size_t kList = index_of_list<P, S>();
  auto& list = std::get<kList>(batch.lists);
  batch.places.push_back({kList, list.size()});
  list.push_back(to_buffers<P, S>(item, stream));
}

// The exponent bytes of an 8-bit state buffer of `size` elements: one int8 per block.
Checked check_exponents(py::handle obj, const Label& label, std::int64_t size) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(label.str() + " must be a numpy.ndarray, got " + type_name(obj));
  }
  auto array = py::reinterpret_borrow<py::array>(obj);
  const std::int64_t blocks = (size + kQuantBlock - 1) / kQuantBlock;
  if (!array.dtype().equal(py::dtype::of<std::int8_t>()) || array.ndim() != 1 ||
      array.shape(0) != blocks) {
    throw py::value_error(label.str() + " must be a one-dimensional int8 array of " +
                          std::to_string(blocks) + " items (one per block of " +
                          std::to_string(kQuantBlock) + " elements), got " +
                          std::string(py::str(array.dtype())) + " with shape " + shape_str(array));
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(label.str() + " must be C-contiguous");
  }
  if (!array.writeable()) {
    throw py::value_error(label.str() + " is read-only but is updated in place");
  }
  return {array, label, true};
}

Extent extent_of(const Checked& b) {
  const auto begin = reinterpret_cast<std::uintptr_t>(b.array.data());
  return {begin, begin + static_cast<std::uintptr_t>(b.array.nbytes()), &b};
}

}  // namespace

std::string Label::str() const {
  const std::string name =
      index < 0 ? kSingularNames[role]
                : std::string(kPluralNames[role]) + "[" + std::to_string(index) + "]";
  return exponents ? name + "'s exponents" : name;
}

const char* plural_name(Role role) { return kPluralNames[role]; }

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

Checked check_buffer(py::handle obj, Label label, bool written, const py::array* param,
                     const Checked* same_dtype_as) {
  if (obj.is_none()) {
    throw py::value_error(label.str() + " is required for these options but is None");
  }
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(label.str() + " must be a numpy.ndarray, got " + type_name(obj));
  }
  auto array = py::reinterpret_borrow<py::array>(obj);
  const Dtype dtype = dtype_of(array, label);
  if (dtype == Dtype::kCode8 && !is_state(label.role)) {
    throw py::type_error(label.str() + " has dtype uint8, which only 8-bit state can have");
  }
  if (param != nullptr) {
    const Label param_label{kParam, label.index};
    const Dtype param_dtype = dtype_of(*param, param_label);
    if (same_dtype_as != nullptr) {
      const Dtype expected = dtype_of(same_dtype_as->array, same_dtype_as->label);
      if (dtype != expected) {
        throw py::type_error(label.str() + " has dtype " + dtype_name(dtype) + " but " +
                             same_dtype_as->label.str() + " has dtype " + dtype_name(expected) +
                             "; they must match");
      }
    } else if (label.role == kSquareAvg) {
      if (!state_dtype_allowed(param_dtype, dtype)) {
        throw py::type_error(label.str() + " has dtype " + dtype_name(dtype) + " but " +
                             param_label.str() + " has dtype " + dtype_name(param_dtype) +
                             "; the state of a " + dtype_name(param_dtype) + " parameter must be " +
                             allowed_states(param_dtype));
      }
    } else if (dtype != param_dtype) {
      throw py::type_error(label.str() + " has dtype " + dtype_name(dtype) + " but " +
                           param_label.str() + " has dtype " + dtype_name(param_dtype) +
                           "; they must match");
    }
    const bool same_shape = array.ndim() == param->ndim() &&
                            std::equal(array.shape(), array.shape() + array.ndim(), param->shape());
    if (!same_shape) {
      throw py::value_error(label.str() + " has shape " + shape_str(array) + " but " +
                            param_label.str() + " has shape " + shape_str(*param) +
                            "; they must match");
    }
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(label.str() +
                          " must be C-contiguous (pass a contiguous array, e.g. "
                          "numpy.ascontiguousarray, and keep it as the state)");
  }
  if (!(array.flags() & kNumpyAligned)) {
    throw py::value_error(label.str() + " must be aligned to its element size");
  }
  if (written && !array.writeable()) {
    throw py::value_error(label.str() + " is read-only but is updated in place");
  }
  return {array, label, written};
}

void check_no_overlap(const std::vector<Checked>& buffers) {
  std::vector<Extent> extents;
  extents.reserve(buffers.size());
  for (const Checked& b : buffers) {
    const Extent e = extent_of(b);
    if (e.end > e.begin) {
      extents.push_back(e);
    }
  }
  std::sort(extents.begin(), extents.end(),
            [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  // Sweep in address order: an extent overlaps an earlier one exactly when it starts before that
  // one's end, so remembering the furthest end seen (and the furthest end of a written buffer)
  // finds every conflicting pair.
  const Extent* furthest_any = nullptr;
  const Extent* furthest_written = nullptr;
  for (const Extent& e : extents) {
    const Extent* clash = nullptr;
    if (furthest_written != nullptr && e.begin < furthest_written->end) {
      clash = furthest_written;
    } else if (e.buffer->written && furthest_any != nullptr && e.begin < furthest_any->end) {
      clash = furthest_any;
    }
    if (clash != nullptr) {
      throw py::value_error(clash->buffer->label.str() + " and " + e.buffer->label.str() +
                            " share memory; every buffer that is updated in place must be "
                            "separate from all the others");
    }
    if (furthest_any == nullptr || e.end > furthest_any->end) {
      furthest_any = &e;
    }
    if (e.buffer->written && (furthest_written == nullptr || e.end > furthest_written->end)) {
      furthest_written = &e;
    }
  }
}

std::vector<Extent> written_extents(const std::vector<Checked>& buffers) {
  std::vector<Extent> out;
  for (const Checked& b : buffers) {
    const Extent e = extent_of(b);
    if (b.written && e.end > e.begin) {
      out.push_back(e);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  return out;
}

const Extent* find_overlap(const std::vector<Extent>& sorted_written, std::uintptr_t begin,
                           std::uintptr_t end) {
  if (end <= begin) {
    return nullptr;
  }
  // Disjoint and sorted by begin, so also sorted by end: the first one ending after `begin` is
  // the only candidate.
  auto it = std::upper_bound(sorted_written.begin(), sorted_written.end(), begin,
                             [](std::uintptr_t value, const Extent& e) { return value < e.end; });
  if (it != sorted_written.end() && it->begin < end) {
    return &*it;
  }
  return nullptr;
}

Hyperparams make_hyperparams(double lr, double alpha, double eps, double weight_decay,
                             double momentum, bool centered, bool maximize, bool eps_in_sqrt,
                             bool decoupled_weight_decay, bool lr_in_momentum, bool nesterov,
                             bool bias_correction, bool fused_multiply_add, bool torch_sqrt,
                             const std::string& compensation, std::uint64_t seed,
                             bool round_each_op, std::int64_t torch_add_block, int torch_threads) {
  Hyperparams hp;
  if (compensation == "none") {
    hp.compensation = Compensation::kNone;
  } else if (compensation == "kahan") {
    hp.compensation = Compensation::kKahan;
  } else if (compensation == "stochastic") {
    hp.compensation = Compensation::kStochastic;
  } else {
    throw py::value_error("compensation must be 'none', 'kahan' or 'stochastic', got '" +
                          compensation + "'");
  }
  hp.seed = seed;
  hp.lr = lr;
  hp.alpha = alpha;
  hp.eps = eps;
  hp.weight_decay = weight_decay;
  hp.momentum = momentum;
  hp.centered = centered;
  hp.maximize = maximize;
  hp.eps_in_sqrt = eps_in_sqrt;
  hp.decoupled_weight_decay = decoupled_weight_decay;
  hp.lr_in_momentum = lr_in_momentum;
  hp.nesterov = nesterov;
  hp.bias_correction = bias_correction;
  hp.fused_multiply_add = fused_multiply_add;
  hp.round_each_op = round_each_op;
  if (torch_add_block < 0 || torch_threads < 1) {
    throw py::value_error("torch_add_block must be >= 0 and torch_threads >= 1, got " +
                          std::to_string(torch_add_block) + " and " +
                          std::to_string(torch_threads));
  }
  hp.torch_add_block = torch_add_block;
  hp.torch_threads = torch_threads;
  if (torch_sqrt && !use_torch_sqrt(hp)) {
    throw py::value_error("torch_sqrt=True but torch's square root has not been installed");
  }
  const std::string problem = check_hyperparams(hp);
  if (!problem.empty()) {
    throw py::value_error(problem);
  }
  return hp;
}

const char* compensation_name(Compensation compensation) {
  switch (compensation) {
    case Compensation::kKahan:
      return "kahan";
    case Compensation::kStochastic:
      return "stochastic";
    case Compensation::kNone:
      break;
  }
  return "none";
}

void gather(const std::vector<std::vector<py::handle>>& objects, bool single, bool with_grads,
            const Hyperparams& hp, Batch& batch, const std::vector<std::uint64_t>& streams) {
  const bool use_momentum = hp.momentum > 0.0;
  const std::size_t n = objects[kParam].size();
  // Reserved up front: items and `param` below point into this vector, so it must never reallocate
  // (each role's buffer, and the exponents of three 8-bit state buffers).
  batch.buffers.reserve(n * (kRoleCount + 3));
  std::vector<Item> items(n);
  for (std::size_t i = 0; i < n; ++i) {
    const py::ssize_t index = single ? -1 : static_cast<py::ssize_t>(i);
    auto add = [&](Role role, bool written, const py::array* param,
                   const Checked* same_dtype_as = nullptr) {
      const Label label{role, index};
      py::handle obj = objects[role][i];
      // 8-bit state comes as a (codes, exponents) pair; every other buffer as one array.
      const bool pair = is_state(role) && py::isinstance<py::tuple>(obj);
      if (pair && py::len(obj) != 2) {
        throw py::value_error(label.str() +
                              " must be an array, or a (codes, exponents) pair of arrays for "
                              "8-bit state, got a tuple of " +
                              std::to_string(py::len(obj)) + " items");
      }
      batch.buffers.push_back(
          check_buffer(pair ? obj[py::int_(0)] : obj, label, written, param, same_dtype_as));
      const Checked* checked = &batch.buffers.back();
      items[i].role[role] = checked;
      const bool codes = is_state(role) && dtype_of(checked->array, label) == Dtype::kCode8;
      if (codes && !pair) {
        throw py::type_error(label.str() +
                             " has dtype uint8: 8-bit state is passed as a (codes, exponents) "
                             "pair");
      }
      if (pair && !codes) {
        throw py::type_error(label.str() + "'s codes must have dtype uint8, got " +
                             dtype_name(dtype_of(checked->array, label)));
      }
      if (pair) {
        batch.buffers.push_back(check_exponents(obj[py::int_(1)], {role, index, true},
                                                static_cast<std::int64_t>(param->size())));
        items[i].exponents[role] = &batch.buffers.back();
      }
      return checked;
    };
    const Checked* param_buffer = add(kParam, true, nullptr);
    const py::array& param = param_buffer->array;
    const Dtype param_dtype = dtype_of(param, param_buffer->label);
    if (hp.compensation != Compensation::kNone && !is_sixteen_bit(param_dtype)) {
      throw py::type_error(std::string("compensation='") + compensation_name(hp.compensation) +
                           "' is for bfloat16 and float16 parameters, but " +
                           param_buffer->label.str() + " has dtype " + dtype_name(param_dtype));
    }
    if (with_grads) {
      add(kGrad, false, &param, param_buffer);
    }
    const Checked* square_avg = add(kSquareAvg, true, &param);
    if (use_momentum) {
      add(kMomentumBuffer, true, &param, square_avg);
    }
    if (hp.centered) {
      add(kGradAvg, true, &param, square_avg);
    }
    if (hp.compensation == Compensation::kKahan) {
      add(kCompensation, true, &param, param_buffer);
    }
  }
  check_no_overlap(batch.buffers);
  for (std::size_t i = 0; i < n; ++i) {
    const Item& item = items[i];
    const std::uint64_t stream = streams.empty() ? i : streams[i];
    const Dtype param = dtype_of(item.role[kParam]->array, item.role[kParam]->label);
    const Dtype state = dtype_of(item.role[kSquareAvg]->array, item.role[kSquareAvg]->label);
    switch (param) {
      case Dtype::kFloat32:
      case Dtype::kComplex64:
        if (state == Dtype::kCode8) {
          add_to<float, code8>(batch, item, stream);
        } else if (state == Dtype::kBFloat16) {
          add_to<float, bfloat16>(batch, item, stream);
        } else {
          add_to<float, float>(batch, item, stream);
        }
        break;
      case Dtype::kFloat64:
      case Dtype::kComplex128:
        add_to<double, double>(batch, item, stream);
        break;
      case Dtype::kBFloat16:
        if (state == Dtype::kCode8) {
          add_to<bfloat16, code8>(batch, item, stream);
        } else if (state == Dtype::kFloat32) {
          add_to<bfloat16, float>(batch, item, stream);
        } else {
          add_to<bfloat16, bfloat16>(batch, item, stream);
        }
        break;
      case Dtype::kFloat16:
        if (state == Dtype::kCode8) {
          add_to<float16, code8>(batch, item, stream);
        } else if (state == Dtype::kFloat32) {
          add_to<float16, float>(batch, item, stream);
        } else {
          add_to<float16, float16>(batch, item, stream);
        }
        break;
      case Dtype::kCode8:
        break;  // check_buffer refuses uint8 parameters
    }
  }
}

std::vector<std::uint64_t> stream_list(py::handle streams, std::size_t expected) {
  std::vector<std::uint64_t> out;
  if (streams.is_none()) {
    return out;
  }
  for (py::handle item : sequence_items(streams, "streams", "ints", expected, true)) {
    if (!py::isinstance<py::int_>(item) || py::isinstance<py::bool_>(item) ||
        item.cast<py::int_>() < py::int_(0)) {
      throw py::value_error("streams must hold ints >= 0, got " + std::string(py::repr(item)));
    }
    out.push_back(item.cast<std::uint64_t>());
  }
  return out;
}

void StepCounters::increment() const {
  for (const Counter& c : counters) {
    if (c.f32 != nullptr) {
      *c.f32 += 1.0f;
    } else {
      *c.f64 += 1.0;
    }
  }
}

void StepCounters::number_updates(Batch& batch) const {
  for (std::size_t i = 0; i < counters.size(); ++i) {
    batch.set_step(i, counters[i].value() + 1.0);
  }
}

bool reads_step_number(const Batch& batch, const Hyperparams& hp) {
  return hp.bias_correction || hp.compensation == Compensation::kStochastic ||
         batch.has_quantized_state();
}

void number_updates(Batch& batch, const Hyperparams& hp, double step) {
  if (reads_step_number(batch, hp) && !(step >= 1.0)) {
    throw py::value_error(
        "step (the number of this update, 1 for the first) is required when "
        "bias_correction=True, compensation='stochastic' or the state is 8-bit");
  }
  for (std::size_t i = 0; i < batch.places.size(); ++i) {
    batch.set_step(i, step);
  }
}

StepCounters step_counters(py::handle steps, std::size_t expected,
                           const std::vector<Extent>* written) {
  StepCounters counters;
  if (steps.is_none()) {
    return counters;
  }
  const std::vector<py::handle> items = sequence_items(steps, "steps", "arrays", expected, true);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string label = "steps[" + std::to_string(i) + "]";
    if (!py::isinstance<py::array>(items[i])) {
      throw py::type_error(label + " must be a numpy.ndarray");
    }
    auto counter = py::reinterpret_borrow<py::array>(items[i]);
    if (counter.size() != 1 || !counter.writeable()) {
      throw py::value_error(label + " must be one writeable element");
    }
    const auto begin = reinterpret_cast<std::uintptr_t>(counter.data());
    const auto end = begin + static_cast<std::uintptr_t>(counter.nbytes());
    if (written != nullptr && find_overlap(*written, begin, end) != nullptr) {
      throw py::value_error(label + " shares memory with a parameter or its state");
    }
    if (counter.dtype().equal(py::dtype::of<float>())) {
      counters.counters.push_back({static_cast<float*>(counter.mutable_data()), nullptr});
    } else if (counter.dtype().equal(py::dtype::of<double>())) {
      counters.counters.push_back({nullptr, static_cast<double*>(counter.mutable_data())});
    } else {
      throw py::type_error(label + " must be float32 or float64");
    }
    counters.keep_alive.push_back(std::move(counter));
  }
  return counters;
}

void gather_state_lists(std::vector<std::vector<py::handle>>& objects, py::handle momentum_buffers,
                        py::handle grad_avgs, py::handle compensations, const Hyperparams& hp,
                        std::size_t n) {
  auto optional_list = [&](py::handle obj, Role role, bool needed, const char* option) {
    if (!needed) {
      return;
    }
    if (obj.is_none()) {
      throw py::value_error(std::string(plural_name(role)) + " is required when " + option +
                            " but is None");
    }
    objects[role] = as_items(obj, role, n, true);
  };
  optional_list(momentum_buffers, kMomentumBuffer, hp.momentum > 0.0, "momentum > 0");
  optional_list(grad_avgs, kGradAvg, hp.centered, "centered=True");
  optional_list(compensations, kCompensation, hp.compensation == Compensation::kKahan,
                "compensation='kahan'");
}

std::vector<py::handle> as_items(py::handle obj, Role role, std::size_t expected, bool check_len) {
  return sequence_items(obj, kPluralNames[role], "arrays", expected, check_len);
}

std::vector<py::handle> sequence_items(py::handle obj, const char* name, const char* what,
                                       std::size_t expected, bool check_len) {
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj)) {
    throw py::type_error(std::string(name) + " must be a list or tuple of " + what + ", got " +
                         type_name(obj));
  }
  auto seq = py::reinterpret_borrow<py::sequence>(obj);
  if (check_len && seq.size() != expected) {
    throw py::value_error(std::string(name) + " has " + std::to_string(seq.size()) +
                          " items but params has " + std::to_string(expected) +
                          "; they must have the same length");
  }
  std::vector<py::handle> out;
  out.reserve(seq.size());
  for (py::handle item : seq) {
    out.push_back(item);
  }
  return out;
}

}  // namespace rmsprop_ext::binding
