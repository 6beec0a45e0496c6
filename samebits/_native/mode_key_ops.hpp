// The mode key's fast paths for the covered ops that are not elementwise (included
// by mode_key.cpp inside its namespace, after its helpers: Table, CALL, kernel_dtype,
// empty, put, nthreads). Each makes the Python kernel's native call for its common
// case and returns false for every other case, which the Python kernel then takes.

// _common.narrow's one rounding of n float32 or double values to dt (float32, or
// bfloat16 through float32 as torch's double -> bfloat16), NaNs canonical, in a new
// tensor of `shape`
template <class V>
at::Tensor narrowed(const V* v, c10::IntArrayRef shape, c10::ScalarType dt) {
  at::Tensor out = empty(shape, dt);
  const int64_t n = out.numel();
  if (dt == c10::kFloat) {
    auto* o = out.mutable_data_ptr<float>();
    for (int64_t i = 0; i < n; ++i)
      o[i] = std::isnan(v[i]) ? c10::bit_cast<float>(0x7fc00000u) : static_cast<float>(v[i]);
  } else {
    auto* o = out.mutable_data_ptr<c10::BFloat16>();
    for (int64_t i = 0; i < n; ++i)
      o[i] = std::isnan(v[i]) ? c10::BFloat16(0x7fc0, c10::BFloat16::from_bits())
                              : c10::BFloat16(static_cast<float>(v[i]));
  }
  return out;
}

// _common.narrow of a float32 tensor: itself for float32
at::Tensor narrow(const at::Tensor& t, c10::ScalarType dt) {
  return dt == c10::kFloat ? t : narrowed(t.const_data_ptr<float>(), t.sizes(), dt);
}

// reductions.py's sum()/mean() of a whole contiguous tensor (sum_all: the ALL order,
// thread-count independent), mean's division by the count in double, narrow()
bool fast_reduce_all(const Table* tab, torch::jit::Stack* stack, size_t nargs, bool mean) {
  auto args = torch::jit::last(*stack, nargs);
  if (tab == nullptr || !args[0].isTensor()) return false;
  const at::Tensor& x = args[0].toTensor();
  const int code = kernel_dtype(x);
  if (code < 0 || !x.is_contiguous() || x.numel() == 0) return false;
  if (!args[1].isNone() && args[1].toScalarType() != x.scalar_type()) return false;
  double v = 0.0;
  if (CALL(tab, sum_all)(x.const_data_ptr(), x.numel(), code, nthreads(), &v) != 0) return false;
  if (mean) v /= static_cast<double>(x.numel());
  put(stack, nargs, narrowed(&v, {}, x.scalar_type()));
  return true;
}

// _policy._fractional_range: a non-integral float start, end or step, with no dtype
// or a floating one (the out= forms: the output's), which the Python kernel refuses
bool fractional_range(const c10::OperatorHandle& op, c10::ArrayRef<c10::IValue> args) {
  const auto& schema = op.schema().arguments();
  bool fractional = false, floating = true;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (schema[i].name() == "dtype") {
      if (!a.isNone()) floating = c10::isFloatingType(a.toScalarType());
    } else if (schema[i].name() == "out" && a.isTensor()) {  // the out= forms
      floating = c10::isFloatingType(a.toTensor().scalar_type());
    } else if (a.isDouble()) {
      const double v = a.toDouble();
      fractional = fractional || !(std::isfinite(v) && v == std::floor(v));
    }
  }
  return fractional && floating;
}

// matmul.py's _linear_direct: contiguous rows of x, K-contiguous weight rows, a (N,)
// bias of the same dtype, straight to the DOT (float32) or PAIR (bfloat16) kernel
bool fast_linear(const Table* tab, torch::jit::Stack* stack, size_t nargs) {
  auto args = torch::jit::last(*stack, nargs);
  if (tab == nullptr || nargs != 3 || !args[0].isTensor() || !args[1].isTensor()) return false;
  const at::Tensor& x = args[0].toTensor();
  const at::Tensor& w = args[1].toTensor();
  const int code = kernel_dtype(x);
  if (code < 0 || kernel_dtype(w) != code || w.dim() != 2 || x.dim() < 1) return false;
  const int64_t N = w.size(0), K = w.size(1);
  if (w.stride(1) != 1 || !x.is_contiguous() || x.numel() == 0 || N == 0 || x.size(-1) != K)
    return false;
  const void* bias = nullptr;
  if (!args[2].isNone()) {
    if (!args[2].isTensor()) return false;
    const at::Tensor& b = args[2].toTensor();
    if (kernel_dtype(b) != code || b.dim() != 1 || b.size(0) != N || b.stride(0) != 1)
      return false;
    bias = b.const_data_ptr();
  }
  const int64_t M = x.numel() / K;
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  at::Tensor out;
  int status;
  if (code == SB_BF16) {  // the PAIR kernel rounds each result once, as .to() would
    out = empty({M, N}, c10::kBFloat16);
    const i64 map[12] = {M, M, 0, N, 1, 0, 0, 0, 0, 1, 0, 0};  // row-major, bf16 C
    status = CALL(tab, gemm_map)(x.const_data_ptr(), K, 1, 0, w.const_data_ptr(), 1, w.stride(0),
                           0, static_cast<float*>(out.mutable_data_ptr()), 0, M * N, 1, M,
                           N, K, bias, code, code, 1, nthreads(), map);
  } else {
    out = empty({M, N}, c10::kFloat);
    status = CALL(tab, gemm)(x.const_data_ptr(), K, 1, 0, w.const_data_ptr(), 1, w.stride(0), 0,
                       out.mutable_data_ptr<float>(), N, M * N, 1, M, N, K, bias, code,
                       code, 1, nthreads());
  }
  if (status != 0) return false;  // the Python kernel runs it again and reports it
  put(stack, nargs, out.view(shape));
  return true;
}

// reductions.py's sum/mean over one run of dims of a contiguous tensor: the SUM order
// (sb_sum over the (outer, R, inner) view, double) per output, mean's division by the
// count in double, then narrow()'s one rounding to the tensor's dtype
bool fast_reduce(const Table* tab, torch::jit::Stack* stack, size_t nargs, bool mean) {
  if (nargs == 2) return fast_reduce_all(tab, stack, nargs, mean);
  auto args = torch::jit::last(*stack, nargs);
  if (tab == nullptr || nargs != 4 || !args[0].isTensor() || !args[1].isIntList()) return false;
  const at::Tensor& x = args[0].toTensor();
  const int code = kernel_dtype(x);
  const int64_t nd = x.dim();
  if (code < 0 || nd < 1 || !x.is_contiguous() || x.numel() == 0) return false;
  if (!args[3].isNone() && args[3].toScalarType() != x.scalar_type()) return false;
  const auto dims = args[1].toIntList();
  const int64_t nr = static_cast<int64_t>(dims.size());
  if (nr < 1 || nr > nd) return false;
  std::vector<bool> seen(nd, false);
  int64_t lo = nd, hi = -1;
  for (const int64_t d0 : dims) {
    if (d0 < -nd || d0 >= nd) return false;
    const int64_t d = d0 < 0 ? d0 + nd : d0;
    if (seen[d]) return false;  // repeated
    seen[d] = true;
    lo = std::min(lo, d), hi = std::max(hi, d);
  }
  if (hi - lo + 1 != nr) return false;  // not one run of dims: the Python kernel permutes
  const bool keepdim = args[2].toBool();
  int64_t outer = 1, R = 1, inner = 1;  // (outer, R, inner) is a view of x: no copy
  std::vector<int64_t> shape;
  for (int64_t d = 0; d < nd; ++d) {
    if (d >= lo && d <= hi) {
      R *= x.size(d);
      if (keepdim) shape.push_back(1);
    } else {
      (d < lo ? outer : inner) *= x.size(d);
      shape.push_back(x.size(d));
    }
  }
  const int64_t rows = outer * inner;  // the outputs, in the kept dims' order
  std::vector<double> acc(rows);
  CALL(tab, sum)(x.const_data_ptr(), outer, R, inner, nullptr, 0, acc.data(), code, nthreads());
  if (mean)
    for (auto& v : acc) v /= static_cast<double>(R);
  put(stack, nargs, narrowed(acc.data(), shape, x.scalar_type()));
  return true;
}

// norms.py's _norm (norm_kind: its LAYER or RMS) on a contiguous input with contiguous
// weight and bias of one kernel dtype: the sb_norm call, then native_layer_norm's
// (out, mean, rstd) with the statistics narrowed to the input's dtype, or rms_norm's out
bool fast_norm(const Table* tab, torch::jit::Stack* stack, size_t nargs, int norm_kind) {
  auto args = torch::jit::last(*stack, nargs);
  const bool layer = nargs == 5;  // native_layer_norm(x, shape, w, b, eps); rms_norm: 4
  if (tab == nullptr || (nargs != 4 && nargs != 5) || !args[0].isTensor() || !args[1].isIntList())
    return false;
  const at::Tensor& x = args[0].toTensor();
  const int code = kernel_dtype(x);
  const auto shape = args[1].toIntVector();
  const int64_t nd = x.dim(), ns = static_cast<int64_t>(shape.size());
  if (code < 0 || !x.is_contiguous() || x.numel() == 0 || ns > nd) return false;
  int64_t R = 1;
  for (int64_t i = 0; i < ns; ++i) {
    if (x.size(nd - ns + i) != shape[i]) return false;
    R *= shape[i];
  }
  const void* wb[2] = {nullptr, nullptr};
  int wdt = SB_F32;
  bool any = false;
  for (int j = 0; j < (layer ? 2 : 1); ++j) {
    const auto& a = args[2 + j];
    if (a.isNone()) continue;
    if (!a.isTensor()) return false;
    const at::Tensor& t = a.toTensor();
    const int c = kernel_dtype(t);
    if (c < 0 || (any && c != wdt) || !t.is_contiguous() || t.sizes() != c10::IntArrayRef(shape))
      return false;
    wdt = c;
    any = true;
    wb[j] = t.const_data_ptr();
  }
  const auto& e = args[layer ? 4 : 3];
  double eps;
  if (e.isDouble()) eps = e.toDouble();
  else if (e.isNone() && !layer)  // rms_norm's default: torch.finfo(dtype).eps
    eps = code == SB_F32 ? std::numeric_limits<float>::epsilon() : 0.0078125;
  else return false;
  const int64_t rows = x.numel() / R;
  at::Tensor y = empty(x.sizes(), x.scalar_type());
  at::Tensor mean = empty({rows}, c10::kFloat), rstd = empty({rows}, c10::kFloat);
  CALL(tab, norm)(x.const_data_ptr(), wb[0], wb[1], y.mutable_data_ptr(), mean.mutable_data_ptr<float>(),
            rstd.mutable_data_ptr<float>(), rows, R, eps, norm_kind, code, wdt, nthreads());
  if (!layer) {
    put(stack, nargs, std::move(y));
    return true;
  }
  std::vector<int64_t> stat(x.sizes().begin(), x.sizes().end() - ns);
  stat.resize(nd, 1);
  torch::jit::drop(*stack, nargs);
  stack->emplace_back(std::move(y));
  stack->emplace_back(narrow(mean, x.scalar_type()).view(stat));
  stack->emplace_back(narrow(rstd, x.scalar_type()).view(stat));
  return true;
}

// attention.py's scaled_dot_product_attention through _fused: float32 or bfloat16
// q, k, v with unit last strides, head dim <= kMaxFusedHeadDim, no dropout, a bool or
// float32 mask or is_causal or neither, GQA by enable_gqa: the same meta and the same
// sb_attention call, the output narrowed to the dtype
constexpr int64_t kMaxFusedHeadDim = 256;  // attention.MAX_FUSED_HEAD_DIM

bool fast_attention(const Table* tab, torch::jit::Stack* stack, size_t nargs) {
  auto args = torch::jit::last(*stack, nargs);
  if (tab == nullptr || nargs != 8) return false;
  for (int i = 0; i < 3; ++i)
    if (!args[i].isTensor()) return false;
  const at::Tensor &q = args[0].toTensor(), &k = args[1].toTensor(), &v = args[2].toTensor();
  const int code = kernel_dtype(q);
  if (code < 0 || kernel_dtype(k) != code || kernel_dtype(v) != code) return false;
  const int64_t nd = q.dim();
  if (nd < 2 || k.dim() != nd || v.dim() != nd) return false;
  if (!args[4].isDouble() || args[4].toDouble() != 0.0 || !args[5].isBool()) return false;
  const bool causal = args[5].toBool();
  const at::Tensor* mask = nullptr;
  if (!args[3].isNone()) {
    if (!args[3].isTensor() || causal) return false;
    mask = &args[3].toTensor();
    const auto mt = mask->scalar_type();
    if (!mask->is_cpu() || mask->layout() != c10::kStrided || (mt != c10::kBool && mt != c10::kFloat))
      return false;
  }
  const int64_t L = q.size(-2), S = k.size(-2), D = q.size(-1), Dv = v.size(-1);
  if (k.size(-1) != D || v.size(-2) != S || D > kMaxFusedHeadDim) return false;
  if (q.stride(-1) != 1 || k.stride(-1) != 1 || v.stride(-1) != 1) return false;
  int64_t rep = 1;
  const bool gqa = args[7].isBool() && args[7].toBool();
  if (gqa && nd >= 3 && k.size(-3) != q.size(-3)) {
    if (q.size(-3) % k.size(-3)) return false;
    rep = q.size(-3) / k.size(-3);
  }
  // batch = broadcast(q's, k's and v's leading dims, k's and v's heads times rep)
  auto heads = [&](const at::Tensor& t) {
    std::vector<int64_t> h(t.sizes().begin(), t.sizes().end() - 2);
    if (rep != 1) h.back() *= rep;
    return h;
  };
  const std::vector<std::vector<int64_t>> shapes = {
      std::vector<int64_t>(q.sizes().begin(), q.sizes().end() - 2), heads(k), heads(v)};
  const size_t nb = static_cast<size_t>(nd - 2);
  std::vector<int64_t> batch(nb, 1);
  for (const auto& sh : shapes)
    for (size_t i = 0; i < nb; ++i) {
      if (sh[i] == 1) continue;
      if (batch[i] != 1 && batch[i] != sh[i]) return false;  // the Python kernel raises
      batch[i] = sh[i];
    }
  const double scale_d = args[6].isNone() ? 1.0 / std::sqrt(static_cast<double>(D))
                                          : (args[6].isDouble() ? args[6].toDouble() : NAN);
  if (std::isnan(scale_d)) return false;
  std::vector<i64> meta = {static_cast<i64>(nb), L, S, D, Dv, rep};
  meta.insert(meta.end(), batch.begin(), batch.end());
  auto batch_strides = [&](c10::IntArrayRef shape, c10::IntArrayRef stride) {
    const int64_t lead = static_cast<int64_t>(nb) - (static_cast<int64_t>(shape.size()) - 2);
    for (size_t i = 0; i < nb; ++i) {
      const int64_t j = static_cast<int64_t>(i) - lead;
      meta.push_back(j < 0 || (shape[j] == 1 && batch[i] != 1) ? 0 : stride[j]);
    }
    meta.push_back(stride[stride.size() - 2]);
  };
  for (const at::Tensor* t : {&q, &k, &v}) batch_strides(t->sizes(), t->strides());
  int mkind = causal ? 3 : 0;
  if (mask == nullptr) {
    meta.insert(meta.end(), nb + 2, 0);
  } else {  // mask.expand(*batch, L, S): a broadcast dim reads stride 0
    std::vector<int64_t> full(batch.begin(), batch.end());
    full.push_back(L);
    full.push_back(S);
    const int64_t md = mask->dim(), fd = static_cast<int64_t>(full.size());
    if (md > fd) return false;
    std::vector<int64_t> st(fd, 0);
    for (int64_t i = 0; i < md; ++i) {
      const int64_t n = mask->size(i), want = full[fd - md + i];
      if (n != want && n != 1) return false;  // expand raises: the Python kernel says so
      st[fd - md + i] = (n == 1 && want != 1) ? 0 : mask->stride(i);
    }
    mkind = mask->scalar_type() == c10::kBool ? 1 : 2;
    batch_strides(full, st);
    meta.push_back(st[fd - 1]);
  }
  int64_t B = 1;
  for (const int64_t b : batch) B *= b;
  if (B == 0 || L == 0) return false;
  at::Tensor out = empty({B, L, Dv}, c10::kFloat);
  if (CALL(tab, attention)(q.const_data_ptr(), k.const_data_ptr(), v.const_data_ptr(),
                     mask == nullptr ? nullptr : mask->const_data_ptr(), meta.data(), mkind,
                     out.mutable_data_ptr<float>(), static_cast<float>(scale_d), code,
                     nthreads()) != 0)
    return false;  // the Python kernel runs it again and reports the error
  std::vector<int64_t> shape(batch.begin(), batch.end());
  shape.push_back(L);
  shape.push_back(Dv);
  put(stack, nargs, narrow(out, q.scalar_type()).view(shape));
  return true;
}
