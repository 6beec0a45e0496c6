// The mode key's per-call checks in C++ (loaded by samebits/_keyshim.py).
//
// _mode.py registers a Python kernel on the mode key for every op the policy covers,
// guards or passes with a kernel. Entering a Python kernel costs ~4 us per call, which
// is most of a decode step's time for ops that end in torch's own kernel anyway. For
// the ops below, this library registers a C++ kernel over the Python one that decides
// the common case itself and hands every other case to the Python kernel it replaced
// (held here), so the Python code stays the one definition of what each op does:
//
//   SBK_PASS        torch's kernel below the mode key (an op that needs a kernel only
//                   because BackendSelect redispatches past fallthroughs);
//   SBK_ALPHA_ONE   add/sub/rsub: torch's kernel when alpha is the integer or float 1
//                   (one IEEE operation), else the engine's fma as SBK_ENGINE makes it
//                   (functional forms, alpha read as its Param) or the Python kernel;
//   SBK_NOT_REDUCED mul/div: torch's kernel unless the first tensor is bfloat16 or
//                   float16 or a tensor is complex (the Python kernel's cases); a
//                   functional bfloat16 tensor with a Python number goes to the
//                   engine as SBK_ENGINE does (the Python kernel's choice);
//   SBK_ENGINE      a pointwise-engine op whose aten arguments are its engine operands,
//                   then the arguments its parameters read (pointwise.Param, passed as
//                   param_codes: each read here as the Python kernel reads it) or
//                   arguments at their defaults, where the Spec names the engine op for
//                   them: the engine's C call on operands that share one dtype
//                   (float32 or bfloat16), one shape and one contiguous layout,
//                   Python numbers rounded once to float32 and broadcast. That is
//                   pointwise.py's _run_same, the same call with the same arguments;
//   SBK_LINEAR      aten::linear: matmul.py's _linear_direct (the same gemm call);
//   SBK_SUM/MEAN    sum/mean over one run of dims, or all, of a contiguous tensor:
//                   reductions.py's sb_sum or sb_sum_all call, division by the count
//                   and narrow() to the dtype;
//   SBK_RANGE       arange/range: torch's kernel unless the Python guard would refuse;
//   SBK_NORM        native_layer_norm and rms_norm: norms.py's sb_norm call;
//   SBK_ATTENTION   scaled_dot_product_attention: attention.py's _fused call.
//
// Each fast case makes the Python kernel's kernel call with the same arguments, so the
// bits are the Python path's; tests/test_keyshim.py holds every kind to that.
// The kernels' calls reach no other op: the output is allocated with empty_cpu, below
// the dispatcher.

#include <ATen/EmptyTensor.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

// The kernels' C entry points, typed from the one list of declarations (sb_kernels.h,
// generated from _decls.py): each SB_API line becomes a function-pointer typedef.
typedef int64_t i64;
#define SB_API typedef
#define SB_FN(name) (*name##_t)
#include "sb_kernels.h"
#undef SB_API
#undef SB_FN

namespace {

enum Kind {
  SBK_PASS = 0, SBK_ALPHA_ONE = 1, SBK_NOT_REDUCED = 2, SBK_ENGINE = 3,
  SBK_LINEAR = 4, SBK_SUM = 5, SBK_MEAN = 6, SBK_RANGE = 7, SBK_NORM = 8, SBK_ATTENTION = 9,
};
enum { SB_F32 = 0, SB_BF16 = 1 };  // the kernels' dtype codes (sb_common.h)

// The kernel entry points the fast paths call, named once: sb_<name> of the path.
#define SBK_ENTRIES(X) X(pointwise) X(gemm) X(gemm_map) X(sum) X(norm) X(attention) X(sum_all)

// One kernel path's entry points (samebits._native.Kernels), in SBK_ENTRIES' order.
struct Table {
#define SBK_FIELD(name) sb_##name##_t name = nullptr;
  SBK_ENTRIES(SBK_FIELD)
#undef SBK_FIELD
};
enum Entry {
#define SBK_INDEX(name) E_##name,
  SBK_ENTRIES(SBK_INDEX)
#undef SBK_INDEX
  kEntries
};
#define SBK_NAME(name) "sb_" #name ","
constexpr const char* kNames = SBK_ENTRIES(SBK_NAME);  // "sb_pointwise,...," (a trailing comma)
#undef SBK_NAME

constexpr auto kKey = c10::DispatchKey::CustomRNGKeyId;
const c10::DispatchKeySet kBelow(c10::DispatchKeySet::FULL_AFTER, kKey);

std::atomic<int> g_enabled{1};
constexpr int kKinds = 10;
std::atomic<uint64_t> g_fast_calls[kKinds] = {};  // calls decided here, per kind (tests)
std::atomic<const Table*> g_table{nullptr};  // the process's kernel path
thread_local const Table* tl_table = nullptr;  // a thread's forced path (push_isa)
std::vector<std::unique_ptr<Table>> g_tables;  // every table made, kept alive

// Calls of each entry point made from here, in SBK_ENTRIES' order (tools/kernel_hashes.py
// adds them to the calls it counts through the Python bindings)
std::atomic<uint64_t> g_entry_calls[kEntries] = {};
template <class F>
F counted(Entry i, F entry) {  // entry i of a Table, its call counted
  g_entry_calls[i].fetch_add(1, std::memory_order_relaxed);
  return entry;
}
#define CALL(tab, name) counted(E_##name, (tab)->name)  // a Table's entry, called and counted

const Table* table() {
  return tl_table != nullptr ? tl_table : g_table.load(std::memory_order_relaxed);
}

// _mode._on_cpu: torch runs a CPU kernel (a Python number is a CPU tensor, so a meta
// call with one has CPU in its set too)
bool on_cpu(c10::DispatchKeySet ks) {
  const auto k = (ks & kBelow).highestPriorityTypeId();
  return k == c10::DispatchKey::CPU || k == c10::DispatchKey::QuantizedCPU;
}

bool reduced(c10::ScalarType t) {
  return t == c10::ScalarType::BFloat16 || t == c10::ScalarType::Half;
}

// A float32 or bfloat16 CPU tensor the kernels read directly; its dtype code, or -1.
int kernel_dtype(const at::Tensor& t) {
  if (!t.defined() || !t.is_cpu() || t.layout() != c10::kStrided) return -1;
  if (t.scalar_type() == c10::kFloat) return SB_F32;
  if (t.scalar_type() == c10::kBFloat16) return SB_BF16;
  return -1;
}

at::Tensor empty(c10::IntArrayRef sizes, c10::ScalarType dt) {
  return at::detail::empty_cpu(sizes, dt, std::nullopt, std::nullopt, std::nullopt,
                               std::nullopt);
}

int nthreads() { return std::max(1, at::get_num_threads()); }

void put(torch::jit::Stack* stack, size_t nargs, at::Tensor y) {
  torch::jit::drop(*stack, nargs);
  stack->emplace_back(std::move(y));
}

#include "mode_key_ops.hpp"

// One argument as the Python kernel sees it: a tensor, a Python number (a wrapped
// number tensor, or a Scalar argument), or something else.
struct Operand {
  const at::Tensor* tensor = nullptr;
  bool number = false, one = false;  // one: the number is the integer or float 1
  bool none = false;                 // an optional argument that is None
  double value = 0.0;                // float(v) of a number
};

Operand operand(const at::Tensor& t) {
  Operand o;
  if (!t.defined() || !t.unsafeGetTensorImpl()->is_wrapped_number()) {
    o.tensor = &t;
  } else if (t.scalar_type() == c10::kDouble) {
    o.number = true, o.value = *t.const_data_ptr<double>(), o.one = o.value == 1.0;
  } else if (t.scalar_type() == c10::kLong) {
    const int64_t v = *t.const_data_ptr<int64_t>();
    o.number = true, o.value = static_cast<double>(v), o.one = v == 1;
  }
  return o;
}

Operand operand(const c10::Scalar& s) {
  Operand o;
  if (s.isFloatingPoint()) o.number = true, o.value = s.toDouble(), o.one = o.value == 1.0;
  else if (s.isIntegral(false)) o.number = true, o.value = static_cast<double>(s.toLong()), o.one = s.toLong() == 1;
  else if (s.isBoolean()) o.one = s.toBool();  // neither a float nor an int to the engine
  return o;
}

Operand operand(const c10::IValue& v) {
  if (v.isTensor()) return operand(v.toTensor());
  Operand o;
  if (v.isDouble()) o.number = true, o.value = v.toDouble(), o.one = o.value == 1.0;
  else if (v.isInt()) o.number = true, o.value = static_cast<double>(v.toInt()), o.one = v.toInt() == 1;
  else if (v.isBool()) o.one = v.toBool();
  else if (v.isNone()) o.none = true;
  else if (v.isScalar()) return operand(v.toScalar());
  return o;
}

// One engine parameter as pointwise.Param describes it (param_codes' fields, in order)
struct Param {
  int arg = -1;        // the argument's index; -1: the constant `value`
  double value = 0.0;  // the constant, or the value where the argument is None (none_ok)
  double scale = 1.0;
  int times = -1;      // another argument's index to multiply by, or -1
  bool f32 = true, has_min = false, none_ok = false;
  double minimum = 0.0;
};

// param_codes' text: fields separated by ',', parameters by ';' (floats in hex)
std::vector<Param> parse_params(const char* text) {
  std::vector<Param> out;
  const std::string all(text == nullptr ? "" : text);
  for (size_t pos = 0; pos < all.size();) {
    size_t end = all.find(';', pos);
    if (end == std::string::npos) end = all.size();
    const std::string one = all.substr(pos, end - pos);
    pos = end + 1;
    std::vector<std::string> f;
    for (size_t a = 0; a <= one.size();) {
      size_t b = one.find(',', a);
      if (b == std::string::npos) b = one.size();
      f.push_back(one.substr(a, b - a));
      a = b + 1;
    }
    if (f.size() != 8) throw std::runtime_error("a parameter needs 8 fields: " + one);
    Param p;
    p.arg = std::stoi(f[0]), p.value = std::strtod(f[1].c_str(), nullptr);
    p.scale = std::strtod(f[2].c_str(), nullptr), p.times = std::stoi(f[3]);
    p.f32 = f[4] == "1", p.has_min = f[5] == "1";
    p.minimum = std::strtod(f[6].c_str(), nullptr), p.none_ok = f[7] == "1";
    out.push_back(p);
  }
  return out;
}

// The parameters' floats from the call's arguments, as pointwise.param_reader computes
// them; false where the Python kernel must decide (a refusal, or an argument that is not
// a number)
bool read_params(const std::vector<Param>& ps, const Operand* ops, int n, double* out) {
  for (size_t k = 0; k < ps.size(); ++k) {
    const Param& p = ps[k];
    if (p.arg < 0) {
      out[k] = p.value;
      continue;
    }
    if (p.arg >= n) return false;
    const Operand& v = ops[p.arg];
    if (v.none && p.none_ok) {
      out[k] = p.value;
      continue;
    }
    if (!v.number) return false;
    double f = v.value * p.scale;
    if (p.times >= 0) {
      if (p.times >= n || !ops[p.times].number) return false;
      f = f * ops[p.times].value;
    }
    if (p.has_min && f < p.minimum) return false;  // the Python kernel refuses it
    out[k] = p.f32 ? static_cast<double>(static_cast<float>(f)) : f;
  }
  return true;
}

enum Decision { PYTHON, TORCH, ENGINE_DONE };

class Kernel final : public c10::OperatorKernel {
 public:
  Kernel(int kind, c10::SafeKernelFunction python, c10::OperatorHandle op, int code, int arity,
         int alpha_index, std::vector<Param> params)
      : kind_(kind), python_(std::move(python)), op_(std::move(op)), code_(code), arity_(arity),
        alpha_index_(alpha_index), params_(std::move(params)) {
    // an engine op's arguments past its operands: the call is the engine op only while
    // they are at their schema defaults (gelu's approximate='none')
    const auto& schema_args = op_.schema().arguments();
    for (size_t i = static_cast<size_t>(std::max(arity_, 0));
         kind_ == SBK_ENGINE && params_.empty() && i < schema_args.size(); ++i)
      defaults_.push_back(schema_args[i].default_value().value_or(c10::IValue()));
  }

  void operator()(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
    if (g_enabled.load(std::memory_order_relaxed) && fast(op, ks, stack)) {
      g_fast_calls[kind_].fetch_add(1, std::memory_order_relaxed);
      return;
    }
    python_.callBoxed(op, ks, stack);
  }

  // The arithmetic and engine kinds on the call's arguments (ops: one per argument):
  // torch's kernel, the engine's result (in *y), or the Python kernel
  Decision decide(c10::DispatchKeySet ks, const Operand* ops, int n, at::Tensor* y) const {
    switch (kind_) {
      case SBK_PASS:
        return TORCH;
      case SBK_ALPHA_ONE:  // alpha != 1: the engine's fma with alpha's parameter (functional)
        if (alpha_index_ < n && ops[alpha_index_].one) return TORCH;
        if (code_ < 0 || params_.empty()) return PYTHON;
        return engine(ks, ops, n, y) ? ENGINE_DONE : PYTHON;
      case SBK_NOT_REDUCED: {
        bool first = true, scaled = false;
        for (int i = 0; i < n; ++i) {  // Python numbers are not tensors to the Python kernel
          if (ops[i].tensor == nullptr) continue;
          const auto t = ops[i].tensor->scalar_type();
          if (c10::isComplexType(t)) return PYTHON;
          scaled = scaled || (first && reduced(t));
          first = false;
        }
        if (first) return PYTHON;  // no tensor: the Python kernel decides
        if (!scaled) return TORCH;
        // a bfloat16 tensor times (or over) a Python number: the engine's mul/div, as the
        // Python kernel chooses (functional forms only: code_ < 0 for the others)
        if (code_ < 0 || n < 2 || !ops[1].number) return PYTHON;
        return engine(ks, ops, n, y) ? ENGINE_DONE : PYTHON;
      }
      case SBK_ENGINE:
        return engine(ks, ops, n, y) ? ENGINE_DONE : PYTHON;
      default:
        return PYTHON;
    }
  }

  int kind() const { return kind_; }
  const c10::SafeKernelFunction& python() const { return python_; }
  const c10::OperatorHandle& op() const { return op_; }

 private:
  bool fast(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
    const size_t nargs = op.schema().arguments().size();
    auto args = torch::jit::last(*stack, nargs);
    switch (kind_) {
      case SBK_PASS:
        break;
      case SBK_ALPHA_ONE:
      case SBK_NOT_REDUCED:
      case SBK_ENGINE: {
        Operand ops[8];
        size_t nops = nargs;
        if (kind_ == SBK_ENGINE && !defaults_.empty()) {  // the rest at their defaults
          for (size_t i = 0; i < defaults_.size(); ++i)
            if (!(args[arity_ + i] == defaults_[i])) return false;
          nops = static_cast<size_t>(arity_);
        }
        const int n = static_cast<int>(std::min<size_t>(nops, 8));
        for (int i = 0; i < n; ++i) ops[i] = operand(args[i]);
        at::Tensor y;
        switch (nops > 8 ? PYTHON : decide(ks, ops, n, &y)) {
          case TORCH:
            op.redispatchBoxed(ks & kBelow, stack);
            return true;
          case ENGINE_DONE:
            put(stack, nargs, std::move(y));
            return true;
          default:
            return false;
        }
      }
      case SBK_LINEAR:
        return on_cpu(ks) && fast_linear(table(), stack, nargs);
      case SBK_SUM:
      case SBK_MEAN:
        return on_cpu(ks) && fast_reduce(table(), stack, nargs, kind_ == SBK_MEAN);
      case SBK_NORM:
        return on_cpu(ks) && fast_norm(table(), stack, nargs, code_);
      case SBK_ATTENTION:
        return on_cpu(ks) && fast_attention(table(), stack, nargs);
      case SBK_RANGE:
        if (fractional_range(op, args)) return false;
        break;
      default:
        return false;
    }
    op.redispatchBoxed(ks & kBelow, stack);
    return true;
  }

  // pointwise.py's _run_same: operands that share one dtype (float32 or bfloat16), one
  // shape and one contiguous layout, Python numbers rounded once to float32, broadcast
  bool engine(c10::DispatchKeySet ks, const Operand* ops, int n, at::Tensor* out) const {
    const Table* tab = table();
    double pv[8] = {0.0};
    if (!on_cpu(ks) || tab == nullptr || params_.size() > 8) return false;
    if (params_.empty() ? n != arity_ : (n < arity_ || !read_params(params_, ops, n, pv)))
      return false;
    n = arity_;  // the operands
    const at::Tensor* x = nullptr;
    for (int i = 0; i < n && x == nullptr; ++i) x = ops[i].tensor;
    if (x == nullptr) return false;
    const int code_dt = kernel_dtype(*x);
    if (code_dt < 0 || !x->is_contiguous() || x->numel() < 1) return false;
    const void* ptrs[3] = {nullptr, nullptr, nullptr};
    int dts[3] = {0, 0, 0}, strides[3] = {0, 0, 0};
    float scalars[3] = {0.f, 0.f, 0.f};
    for (int i = 0; i < n; ++i) {
      if (ops[i].tensor != nullptr) {
        const at::Tensor& t = *ops[i].tensor;
        if (kernel_dtype(t) != code_dt) return false;
        if (&t != x && (t.sizes() != x->sizes() || t.strides() != x->strides())) return false;
        ptrs[i] = t.const_data_ptr();
        dts[i] = code_dt;
        strides[i] = 1;
      } else if (ops[i].number) {  // a Python number: float(v), then float32 once
        scalars[i] = static_cast<float>(ops[i].value);
        ptrs[i] = &scalars[i];
        dts[i] = SB_F32;
        strides[i] = 0;
      } else {
        return false;
      }
    }
    // empty_like(x), as _run_same: a dense tensor's strides are kept (size-1 dims too)
    at::Tensor y = at::detail::empty_strided_cpu(x->sizes(), x->strides(), x->scalar_type());
    if (CALL(tab, pointwise)(code_, x->numel(), ptrs[0], ptrs[1], ptrs[2], dts, strides,
                       y.mutable_data_ptr(), code_dt, pv, static_cast<int>(params_.size()),
                       nthreads()) != 0)
      return false;  // the Python kernel runs it again and reports the error
    *out = std::move(y);
    return true;
  }

  int kind_;
  c10::SafeKernelFunction python_;
  c10::OperatorHandle op_;
  int code_, arity_, alpha_index_;
  std::vector<c10::IValue> defaults_;  // SBK_ENGINE: the arguments past the operands
  std::vector<Param> params_;          // SBK_ENGINE: the engine parameters they give
};

// The unboxed form of a Kernel for a functional signature Tensor(Args...): the
// dispatcher calls it without boxing the arguments into a stack (boxing cost ~0.3 us
// per call, a quarter of a small add), and torch's kernel is reached by a typed
// redispatch. Every case the Kernel does not decide is boxed and given to it.
template <class... Args>
struct Typed {
  std::shared_ptr<Kernel> core;
  c10::TypedOperatorHandle<at::Tensor(Args...)> typed;

  at::Tensor operator()(c10::DispatchKeySet ks, Args... args) const {
    if (g_enabled.load(std::memory_order_relaxed)) {
      Operand ops[sizeof...(Args)] = {operand(args)...};
      at::Tensor y;
      const Decision d = core->decide(ks, ops, static_cast<int>(sizeof...(Args)), &y);
      if (d != PYTHON) {
        g_fast_calls[core->kind()].fetch_add(1, std::memory_order_relaxed);
        return d == TORCH ? typed.redispatch(ks & kBelow, args...) : y;
      }
    }
    torch::jit::Stack stack;
    stack.reserve(sizeof...(Args));
    (stack.emplace_back(args), ...);
    core->python().callBoxed(core->op(), ks, &stack);
    return std::move(stack.back()).toTensor();
  }
};

// A functional op whose schema is Tensor(types...) exactly, with no aliasing
bool has_signature(const c10::FunctionSchema& schema, std::initializer_list<const char*> types) {
  const auto& args = schema.arguments();
  const auto& rets = schema.returns();
  if (args.size() != types.size() || rets.size() != 1 || rets[0].type()->str() != "Tensor")
    return false;
  if (rets[0].alias_info() != nullptr) return false;
  size_t i = 0;
  for (const char* t : types) {
    if (args[i].type()->str() != t || args[i].alias_info() != nullptr) return false;
    ++i;
  }
  return true;
}

using T = const at::Tensor&;
using S = const c10::Scalar&;

// The kernel for `handle`: unboxed where its schema is one of these signatures, else boxed
torch::CppFunction make_kernel(const c10::OperatorHandle& handle, std::shared_ptr<Kernel> k,
                               bool* unboxed) {
  const auto& schema = handle.schema();
  const int kind = k->kind();
  *unboxed = true;
  if (kind == SBK_PASS || kind == SBK_ALPHA_ONE || kind == SBK_NOT_REDUCED || kind == SBK_ENGINE) {
    if (has_signature(schema, {"Tensor"}))
      return torch::CppFunction(Typed<T>{k, handle.typed<at::Tensor(T)>()});
    if (has_signature(schema, {"Tensor", "Tensor"}))
      return torch::CppFunction(Typed<T, T>{k, handle.typed<at::Tensor(T, T)>()});
    if (has_signature(schema, {"Tensor", "Scalar"}))
      return torch::CppFunction(Typed<T, S>{k, handle.typed<at::Tensor(T, S)>()});
    if (has_signature(schema, {"Scalar", "Tensor"}))
      return torch::CppFunction(Typed<S, T>{k, handle.typed<at::Tensor(S, T)>()});
    if (has_signature(schema, {"Tensor", "Tensor", "Scalar"}))
      return torch::CppFunction(Typed<T, T, S>{k, handle.typed<at::Tensor(T, T, S)>()});
    if (has_signature(schema, {"Tensor", "Scalar", "Scalar"}))
      return torch::CppFunction(Typed<T, S, S>{k, handle.typed<at::Tensor(T, S, S)>()});
  }
  *unboxed = false;
  struct Boxed final : c10::OperatorKernel {
    std::shared_ptr<Kernel> k;
    explicit Boxed(std::shared_ptr<Kernel> kernel) : k(std::move(kernel)) {}
    void operator()(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* st) {
      (*k)(op, ks, st);
    }
  };
  return torch::CppFunction::makeFromBoxedFunctor(std::make_unique<Boxed>(std::move(k)));
}

std::vector<std::unique_ptr<torch::Library>> g_libs;
std::set<std::string> g_unboxed;  // the ops given an unboxed kernel (tests ask)
std::string g_error;

}  // namespace

extern "C" {

// Put the C++ kernel of `kind` over the mode key's current (Python) kernel of
// `qualname` ("aten::add.Tensor"), with an engine op's parameters as pointwise.param_codes
// writes them ("" for none). 0 on success, else -1 and sbk_error() says why.
int sbk_install(const char* qualname, int kind, int code, int arity, const char* params) {
  if (kind < 0 || kind >= kKinds) {
    g_error = std::string(qualname) + ": no kernel kind " + std::to_string(kind);
    return -1;
  }
  try {
    std::string q(qualname);
    const auto sep = q.find("::");
    const std::string ns = q.substr(0, sep), rest = q.substr(sep + 2);
    const auto dot = rest.find('.');
    const std::string name = rest.substr(0, dot);
    const std::string overload = dot == std::string::npos ? "" : rest.substr(dot + 1);
    auto handle = c10::Dispatcher::singleton().findSchemaOrThrow(
        (ns + "::" + name).c_str(), overload.c_str());
    if (!handle.hasKernelForDispatchKey(kKey)) {
      g_error = q + " has no kernel on the mode key to fall back to";
      return -1;
    }
    int alpha = -1;
    const auto& schema_args = handle.schema().arguments();
    for (size_t i = 0; i < schema_args.size(); ++i)
      if (schema_args[i].name() == "alpha") alpha = static_cast<int>(i);
    if (kind == SBK_ALPHA_ONE && alpha < 0) {
      g_error = q + " has no alpha argument";
      return -1;
    }
    auto python = handle.getComputedKernelForDispatchKey(kKey);
    struct Silent : c10::WarningHandler {  // torch warns of the override: it is the point
      void process(const c10::Warning&) override {}
    } silent;
    c10::WarningUtils::WarningHandlerGuard guard(&silent);
    auto lib = std::make_unique<torch::Library>(torch::Library::IMPL, ns, kKey, __FILE__, __LINE__);
    bool unboxed = false;
    auto kernel = std::make_shared<Kernel>(kind, python, handle, code, arity, alpha, parse_params(params));
    lib->impl(rest.c_str(), make_kernel(handle, std::move(kernel), &unboxed));
    if (unboxed) g_unboxed.insert(q);
    g_libs.push_back(std::move(lib));
    return 0;
  } catch (const std::exception& e) {
    g_error = e.what();
    return -1;
  }
}

// A fallthrough on the mode key for each op in `names` ("ns::op.overload", one per
// line): the ops the policy lets through, ~830 of them, registered here in one call
// instead of one Python torch.library call each. 0, or -1 and sbk_error() says why.
int sbk_fallthroughs(const char* names) {
  try {
    std::map<std::string, torch::Library*> libs;  // one per namespace
    const std::string all(names);
    for (size_t pos = 0; pos < all.size();) {
      size_t end = all.find('\n', pos);
      if (end == std::string::npos) end = all.size();
      const std::string q = all.substr(pos, end - pos);
      pos = end + 1;
      const auto sep = q.find("::");
      if (sep == std::string::npos) {
        g_error = q + ": not a qualified op name";
        return -1;
      }
      const std::string ns = q.substr(0, sep);
      auto it = libs.find(ns);
      if (it == libs.end()) {
        g_libs.push_back(std::make_unique<torch::Library>(torch::Library::IMPL, ns, kKey, __FILE__, __LINE__));
        it = libs.emplace(ns, g_libs.back().get()).first;
      }
      it->second->impl(q.substr(sep + 2).c_str(), torch::CppFunction::makeFallthrough());
    }
    return 0;
  } catch (const std::exception& e) {
    g_error = e.what();
    return -1;
  }
}

const char* sbk_error(void) { return g_error.c_str(); }

// 1 if `qualname`'s kernel is unboxed (a typed functional signature), else 0.
int sbk_unboxed(const char* qualname) { return g_unboxed.count(qualname) ? 1 : 0; }

// The names of the entry points sbk_set_table takes, comma-separated, in order.
const char* sbk_kernel_names(void) { return kNames; }

// A kernel path's entry points (addresses, in kNames' order) for the process
// (forced = 0) or for this thread only (forced = 1; fns = NULL: back to the process's).
void sbk_set_table(void* const* fns, int forced) {
  const Table* t = nullptr;
  if (fns != nullptr) {
    auto made = std::make_unique<Table>();
#define SBK_SET(name) made->name = reinterpret_cast<sb_##name##_t>(fns[E_##name]);
    SBK_ENTRIES(SBK_SET)
#undef SBK_SET
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& old : g_tables)  // one table per path, made once
      if (std::memcmp(old.get(), made.get(), sizeof(Table)) == 0) t = old.get();
    if (t == nullptr) {
      g_tables.push_back(std::move(made));
      t = g_tables.back().get();
    }
  }
  if (forced) tl_table = t;
  else g_table.store(t);
}

// The calls this library made of entry point `i` (kNames' order).
uint64_t sbk_entry_calls(int i) { return i >= 0 && i < kEntries ? g_entry_calls[i].load() : 0; }

// The sb_pointwise entry a fast call in this thread would use now.
void* sbk_thread_pointwise(void) {
  const Table* t = table();
  return t == nullptr ? nullptr : reinterpret_cast<void*>(t->pointwise);
}

// 0: every C++ kernel calls the Python kernel it replaced (tests compare the two).
void sbk_set_enabled(int on) { g_enabled.store(on); }

int sbk_enabled(void) { return g_enabled.load(); }

// The calls the kernels of `kind` decided (kind < 0: every kind).
uint64_t sbk_fast_calls(int kind) {
  uint64_t n = 0;
  for (int k = 0; k < kKinds; ++k)
    if (kind < 0 || k == kind) n += g_fast_calls[k].load();
  return n;
}

}  // extern "C"
