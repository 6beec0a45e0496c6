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
//                   (one IEEE operation), else the Python kernel (the engine's fma);
//   SBK_NOT_REDUCED mul/div: torch's kernel unless the first tensor is bfloat16 or
//                   float16 or a tensor is complex (the Python kernel's cases); a
//                   functional bfloat16 tensor with a Python number goes to the
//                   engine as SBK_ENGINE does (the Python kernel's choice);
//   SBK_ENGINE      a pointwise-engine op whose aten arguments are exactly its engine
//                   operands: the engine's C call on operands that share one dtype
//                   (float32 or bfloat16), one shape and one contiguous layout, more
//                   than one element, Python numbers rounded once to float32 and
//                   broadcast. That is pointwise.py's _run_same, the same call with the
//                   same arguments, so the bits are the Python path's (tested).
//
// The kernels' calls reach no other op: the output is allocated with empty_cpu, below
// the dispatcher.

#include <ATen/EmptyTensor.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace {

enum Kind { SBK_PASS = 0, SBK_ALPHA_ONE = 1, SBK_NOT_REDUCED = 2, SBK_ENGINE = 3 };
enum { SB_F32 = 0, SB_BF16 = 1 };  // the engine's dtype codes (sb_common.h)

using PointwiseFn = int (*)(int, int64_t, const void*, const void*, const void*, const int*,
                            const int*, void*, int, const double*, int, int);

constexpr auto kKey = c10::DispatchKey::CustomRNGKeyId;
const c10::DispatchKeySet kBelow(c10::DispatchKeySet::FULL_AFTER, kKey);

std::atomic<int> g_enabled{1};
std::atomic<uint64_t> g_fast_calls{0};  // calls decided here (tests check they happen)
std::atomic<PointwiseFn> g_pointwise{nullptr};
thread_local PointwiseFn tl_pointwise = nullptr;  // a thread's forced kernel path
thread_local int tl_forced = 0;

// _mode._on_cpu: torch runs a CPU kernel (a Python number is a CPU tensor, so a meta
// call with one has CPU in its set too)
bool on_cpu(c10::DispatchKeySet ks) {
  const auto k = (ks & kBelow).highestPriorityTypeId();
  return k == c10::DispatchKey::CPU || k == c10::DispatchKey::QuantizedCPU;
}

bool is_one(const c10::IValue& v) {
  if (v.isInt()) return v.toInt() == 1;
  if (v.isDouble()) return v.toDouble() == 1.0;
  if (v.isBool()) return v.toBool();
  return false;
}

bool is_wrapped(const c10::IValue& v) {
  return v.isTensor() && v.toTensor().unsafeGetTensorImpl()->is_wrapped_number();
}

bool reduced(c10::ScalarType t) {
  return t == c10::ScalarType::BFloat16 || t == c10::ScalarType::Half;
}

class Kernel final : public c10::OperatorKernel {
 public:
  Kernel(int kind, c10::SafeKernelFunction python, int code, int arity, int alpha_index)
      : kind_(kind), python_(std::move(python)), code_(code), arity_(arity),
        alpha_index_(alpha_index) {}

  void operator()(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
    if (g_enabled.load(std::memory_order_relaxed) && fast(op, ks, stack)) {
      g_fast_calls.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    python_.callBoxed(op, ks, stack);
  }

 private:
  bool fast(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
    const size_t nargs = op.schema().arguments().size();
    auto args = torch::jit::last(*stack, nargs);
    switch (kind_) {
      case SBK_PASS:
        break;
      case SBK_ALPHA_ONE:
        if (alpha_index_ >= 0 && !is_one(args[alpha_index_])) return false;
        break;
      case SBK_NOT_REDUCED: {
        bool first = true, scaled = false;
        for (const auto& a : args) {  // Python numbers are not tensors to the Python kernel
          if (!a.isTensor() || is_wrapped(a)) continue;
          const auto t = a.toTensor().scalar_type();
          if (c10::isComplexType(t)) return false;
          scaled = scaled || (first && reduced(t));
          first = false;
        }
        if (first) return false;  // no tensor: the Python kernel decides
        if (!scaled) break;
        // a bfloat16 tensor times (or over) a Python number: the engine's mul/div, as the
        // Python kernel chooses (functional forms only: code_ < 0 for the others)
        if (code_ < 0 || !(args[1].isScalar() || is_wrapped(args[1]))) return false;
        return engine(ks, stack, nargs);
      }
      case SBK_ENGINE:
        return engine(ks, stack, nargs);
      default:
        return false;
    }
    op.redispatchBoxed(ks & kBelow, stack);
    return true;
  }

  bool engine(c10::DispatchKeySet ks, torch::jit::Stack* stack, size_t nargs) {
    if (!on_cpu(ks) || static_cast<int>(nargs) != arity_) return false;
    PointwiseFn fn = tl_forced ? tl_pointwise : g_pointwise.load(std::memory_order_relaxed);
    if (fn == nullptr) return false;
    auto args = torch::jit::last(*stack, nargs);
    const at::Tensor* x = nullptr;
    for (const auto& a : args) {
      if (a.isTensor() && !a.toTensor().unsafeGetTensorImpl()->is_wrapped_number()) {
        x = &a.toTensor();
        break;
      }
    }
    if (x == nullptr || !x->defined() || !x->is_cpu() || x->layout() != c10::kStrided) return false;
    const auto dt = x->scalar_type();
    if (dt != c10::kFloat && dt != c10::kBFloat16) return false;
    if (!x->is_contiguous() || x->numel() < 2) return false;
    const int code_dt = dt == c10::kFloat ? SB_F32 : SB_BF16;
    const void* ptrs[3] = {nullptr, nullptr, nullptr};
    int dts[3] = {0, 0, 0}, strides[3] = {0, 0, 0};
    float scalars[3] = {0.f, 0.f, 0.f};
    for (int i = 0; i < arity_; ++i) {
      const auto& a = args[i];
      double v;
      if (a.isTensor()) {
        const at::Tensor& t = a.toTensor();
        if (t.unsafeGetTensorImpl()->is_wrapped_number()) {
          // a Python number: as pointwise.py's _scalar_operand, float(v) rounded once
          if (t.scalar_type() == c10::kDouble) v = t.item<double>();
          else if (t.scalar_type() == c10::kLong) v = static_cast<double>(t.item<int64_t>());
          else return false;
        } else {
          if (!t.defined() || t.scalar_type() != dt || !t.is_cpu() || t.layout() != c10::kStrided)
            return false;
          if (&t != x && (t.sizes() != x->sizes() || t.strides() != x->strides())) return false;
          ptrs[i] = t.const_data_ptr();
          dts[i] = code_dt;
          strides[i] = 1;
          continue;
        }
      } else if (a.isDouble()) {
        v = a.toDouble();
      } else if (a.isInt()) {
        v = static_cast<double>(a.toInt());
      } else {
        return false;
      }
      scalars[i] = static_cast<float>(v);
      ptrs[i] = &scalars[i];
      dts[i] = SB_F32;
      strides[i] = 0;
    }
    at::Tensor y = at::detail::empty_cpu(x->sizes(), dt, std::nullopt, std::nullopt,
                                         std::nullopt, std::nullopt);
    double no_params = 0.0;
    const int nthreads = std::max(1, at::get_num_threads());
    if (fn(code_, x->numel(), ptrs[0], ptrs[1], ptrs[2], dts, strides, y.mutable_data_ptr(),
           code_dt, &no_params, 0, nthreads) != 0)
      return false;  // the Python kernel runs it again and reports the error
    torch::jit::drop(*stack, nargs);
    stack->emplace_back(std::move(y));
    return true;
  }

  int kind_;
  c10::SafeKernelFunction python_;
  int code_, arity_, alpha_index_;
};

std::vector<std::unique_ptr<torch::Library>> g_libs;
std::string g_error;

}  // namespace

extern "C" {

// Put the C++ kernel of `kind` over the mode key's current (Python) kernel of
// `qualname` ("aten::add.Tensor"). 0 on success, else -1 and sbk_error() says why.
int sbk_install(const char* qualname, int kind, int code, int arity) {
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
    lib->impl(rest.c_str(), torch::CppFunction::makeFromBoxedFunctor(
                                std::make_unique<Kernel>(kind, python, code, arity, alpha)));
    g_libs.push_back(std::move(lib));
    return 0;
  } catch (const std::exception& e) {
    g_error = e.what();
    return -1;
  }
}

const char* sbk_error(void) { return g_error.c_str(); }

// The engine's entry (sb_pointwise of the process's kernel path).
void sbk_set_pointwise(void* fn) { g_pointwise.store(reinterpret_cast<PointwiseFn>(fn)); }

// This thread's forced kernel path (samebits._native.push_isa), or back to the process's.
void sbk_set_thread_pointwise(void* fn, int forced) {
  tl_pointwise = reinterpret_cast<PointwiseFn>(fn);
  tl_forced = forced;
}

// 0: every C++ kernel calls the Python kernel it replaced (tests compare the two).
void sbk_set_enabled(int on) { g_enabled.store(on); }

int sbk_enabled(void) { return g_enabled.load(); }

uint64_t sbk_fast_calls(void) { return g_fast_calls.load(); }

// The engine entry a fast call in this thread would use now.
void* sbk_thread_pointwise(void) {
  return reinterpret_cast<void*>(tl_forced ? tl_pointwise : g_pointwise.load());
}

}  // extern "C"
