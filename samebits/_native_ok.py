"""Aten ops that take floating-point tensors, are not tagged pointwise, and need no
invariant kernel: each output's bits already depend only on its own inputs, by
construction. Grouped by the reason. samebits._mode lists them in covered_ops(), and
tests/test_op_sweep.py requires every such op in torch's registry to be covered,
denied or listed here."""

from __future__ import annotations

# fmt: off
_GROUPS: dict[str, tuple[str, ...]] = {
    "moves, copies, pads or selects elements; no floating-point arithmetic": (
        "_to_copy", "_lazy_clone", "_pin_memory", "_reshape_copy", "_resize_output",
        "_unsafe_view", "_unsafe_index.Tensor", "_unsafe_masked_index",
        "copy_sparse_to_sparse", "set",
        "set.source_Storage", "set.source_Storage_storage_offset", "set.source_Tensor",
        "resize", "resize_as", "resize_as_sparse", "sparse_resize", "sparse_resize_and_clear",
        "lift", "new_empty", "new_full", "new_ones", "new_zeros", "empty_like", "full_like",
        "ones_like", "zeros_like", "fill.Scalar", "fill.Tensor", "zero", "flip", "roll",
        "rot90", "repeat", "repeat_interleave.Tensor", "tril", "triu", "take", "gather",
        "index.Tensor", "index_select", "index_copy", "index_fill.int_Scalar",
        "index_fill.int_Tensor", "masked_fill.Tensor", "masked_scatter", "masked_select",
        "scatter.src", "scatter.value", "constant_pad_nd", "reflection_pad1d",
        "reflection_pad2d", "reflection_pad3d", "replication_pad1d", "replication_pad2d",
        "replication_pad3d", "channel_shuffle", "native_channel_shuffle", "pixel_shuffle",
        "pixel_unshuffle", "im2col", "embedding", "upsample_nearest1d", "upsample_nearest2d",
        "upsample_nearest3d", "_upsample_nearest_exact1d", "_upsample_nearest_exact2d",
        "_upsample_nearest_exact3d", "_pack_padded_sequence", "_nested_from_padded",
        "_nested_tensor_from_mask", "_nested_compute_contiguous_strides_offsets",
        "_jagged_to_padded_dense_forward", "_padded_dense_to_jagged_forward", "to_mkldnn",
        "_new_zeros_with_same_feature_meta", "lu_unpack", "_spdiags", "_coalesced",
        "_convert_indices_from_coo_to_csr", "_convert_indices_from_csr_to_coo", "_to_sparse",
        "_to_sparse.sparse_dim", "_to_sparse_bsc", "_to_sparse_bsr", "_to_sparse_csc",
        "_to_sparse_csr", "sparse_compressed_tensor.comp_plain_value",
        "sparse_compressed_tensor.comp_plain_value_size", "complex", "hash_tensor",
    ),
    "concatenates, stacks, or writes slices into a copy (cat, stack, block_diag, the "
    "*_scatter ops, the backward of indexing, which fills the rest with zeros): data "
    "movement, no arithmetic": (
        "cat", "stack", "_stack", "_chunk_cat", "block_diag", "diag_embed", "slice_scatter",
        "select_scatter", "diagonal_scatter", "as_strided_scatter", "select_backward",
        "slice_backward", "diagonal_backward", "new_empty_strided", "unsafe_split.Tensor",
        "unsafe_split_with_sizes", "to_padded_tensor", "_nested_tensor_from_tensor_list",
        "_nested_from_padded_and_nested_example", "_nested_tensor_size",
        "_nested_tensor_strides", "_nested_tensor_storage_offsets", "int_repr",
        "q_per_channel_scales", "q_per_channel_zero_points", "dequantize.tensors",
        "quantize_per_tensor.tensors", "round", "narrow_copy.out", "eye.out", "eye.m_out",
        "_nested_from_padded_tensor", "_nested_get_jagged_dummy", "_nested_get_lengths",
        "_nested_get_max_seqlen", "_nested_get_min_seqlen", "_nested_get_offsets",
        "_convert_weight_to_int4pack", "record_stream",
    ),
    "compares or orders elements (max, min, sort, search, count): exact in any order; "
    "ties resolve by index": (
        "amax", "amin", "max", "max.dim", "min", "min.dim", "aminmax", "_aminmax",
        "_aminmax.dim", "argmax", "argmin", "sort", "sort.stable", "topk", "kthvalue",
        "median", "median.dim", "nanmedian", "nanmedian.dim", "mode", "cummax", "cummin",
        "max_pool2d_with_indices", "max_pool3d_with_indices", "adaptive_max_pool2d",
        "adaptive_max_pool3d", "fractional_max_pool2d", "fractional_max_pool3d",
        "max_unpool2d", "max_unpool3d", "_cummax_helper", "_cummin_helper", "unique_consecutive", "unique_dim",
        "unique_dim_consecutive", "_unique", "_unique2", "nonzero", "nonzero_static",
        "count_nonzero", "count_nonzero.dim_IntList", "all", "all.dim", "all.dims", "any",
        "any.dim", "any.dims", "_is_all_true", "_is_any_true", "bucketize.Scalar",
        "bucketize.Tensor", "searchsorted.Scalar", "searchsorted.Tensor",
        "isin.Scalar_Tensor", "isin.Tensor_Scalar", "isin.Tensor_Tensor",
        "bincount",
    ),
    "one correctly rounded operation per output element (x * w, or a select), no "
    "reduction": ("_prelu_kernel",),
    "factories whose values come from their scalar arguments alone (no input tensor to "
    "vary); measured the same at every position and dispatch level": (
        "linspace.Scalar_Tensor", "linspace.Tensor_Scalar", "linspace.Tensor_Tensor",
        "logspace.Scalar_Tensor", "logspace.Tensor_Scalar", "logspace.Tensor_Tensor",
    ),
    "a sequential scan along dim per row, in torch's accumulate type (double for float32, "
    "float for bfloat16 and float16), one row per thread, no vector body: the same bits as "
    "an independent sequential scan at every thread count and dispatch level "
    "(tests/ops/test_reductions.py)": ("cumsum", "cumprod"),
    "quantization and weight packing: elementwise rounding or layout, no reduction": (
        "quantize_per_channel", "quantize_per_tensor", "quantize_per_tensor.tensor_qparams",
        "dequantize.self", "_make_per_channel_quantized_tensor",
        "_make_per_tensor_quantized_tensor", "_empty_per_channel_affine_quantized",
        "fake_quantize_per_channel_affine_cachemask",
        "fake_quantize_per_tensor_affine_cachemask",
        "_fake_quantize_per_tensor_affine_cachemask_tensor_qparams",
        "_convert_weight_to_int4pack_for_cpu", "_dyn_quant_pack_4bit_weight", "_int_mm",
    ),
    "training-only (gradients, loss scaling, learnable quantization), never in inference": (
        "_amp_foreach_non_finite_check_and_unscale", "_amp_update_scale", "_dirichlet_grad",
        "_standard_gamma_grad", "_fake_quantize_learnable_per_channel_affine",
        "_fake_quantize_learnable_per_tensor_affine", "glu_jvp",
    ),
    "random draws made exactly from the generator's bits (integers, a permutation, bits "
    "scaled by a power of two, or compared with p): the same draws for the same generator "
    "state on every CPU; the audit reports random ops in eval forwards": (
        "random", "random.from", "random.to", "randint", "randint.generator", "randint.low",
        "randint.low_generator", "randint_like", "randint_like.Tensor",
        "randint_like.Tensor_generator", "randint_like.generator", "randint_like.low_dtype",
        "randint_like.low_generator_dtype", "randperm", "randperm.generator", "rand",
        "rand.generator", "rand_like", "rand_like.generator", "bernoulli", "bernoulli.p",
        "bernoulli.Tensor", "bernoulli_.Tensor", "bernoulli_.float", "native_dropout",
        "_fused_dropout", "randperm.generator_out", "_philox_key_fold_in",
        "_philox_key_fold_in.Tensor", "_philox_randint_",
        "_philox_key_split", "_philox_uniform_",
    ),
    "assertions and test ops of torch's own": (
        "_functional_assert_async.msg", "_functional_assert_scalar",
        "_functional_sym_constrain_range", "_functional_sym_constrain_range_for_size",
        "_foobar", "_test_autograd_multiple_dispatch.fullcoverage", "_test_functorch_fallback",
        "_test_optional_filled_intlist", "_test_optional_floatlist", "_test_optional_intlist",
        "_test_parallel_materialize", "_test_warn_in_autograd",
    ),
}
# fmt: on

NATIVE_OK: dict[str, str] = {op: why for why, ops in _GROUPS.items() for op in ops}


# Pointwise ops (every overload, with their in-place and out= forms) whose torch kernel
# gives each output element as one correctly rounded IEEE-754 operation of its inputs
# (add, sub, mul, div: the same bits on every machine by IEEE-754; not sqrt: torch's
# float32 sqrt is not correctly rounded, so the engine computes it), an exact
# operation (a negation, a rounding to an integral value, fmod, a comparison, a select,
# a cast's rounding), or integer arithmetic. The rest of the floating elementwise ops
# run in samebits' pointwise engine (samebits/ops/pointwise.py). add, sub and mul, div
# with a scaling or on complex numbers are guarded in samebits/_policy.py.
_POINTWISE_GROUPS: dict[str, tuple[str, ...]] = {
    "one correctly rounded IEEE-754 operation per element (bfloat16 and float16 are "
    "computed in float32 and rounded once)": (
        "reciprocal",
        "square",
        "true_divide",
        "deg2rad",
        "rad2deg",
        "leaky_relu",
        "leaky_relu_backward",
    ),
    "exact per element: a sign or absolute value, a rounding to an integral value, a "
    "remainder (fmod is exact; remainder adds the divisor once), frexp": (
        "abs",
        "absolute",
        "neg",
        "negative",
        "positive",
        "floor",
        "ceil",
        "trunc",
        "fix",
        "frac",
        "sign",
        "sgn",
        "signbit",
        "copysign",
        "nextafter",
        "fmod",
        "remainder",
        "frexp",
        "conj_physical",
        "_conj_physical",
        "resolve_conj",
        "resolve_neg",
    ),
    "a comparison or a select per element (NaN and signed zeros follow IEEE-754 compares): exact": (
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "less",
        "less_equal",
        "greater",
        "greater_equal",
        "not_equal",
        "equal",
        "isnan",
        "isinf",
        "isposinf",
        "isneginf",
        "isfinite",
        "isreal",
        "maximum",
        "minimum",
        "max",
        "min",
        "clamp",
        "clamp_min",
        "clamp_max",
        "clip",
        "hardtanh",
        "hardtanh_backward",
        "relu",
        "relu6",
        "threshold",
        "threshold_backward",
        "hardshrink",
        "hardshrink_backward",
        "softshrink_backward",
        "heaviside",
        "where",
        "masked_fill",
        "nan_to_num",
        "logical_and",
        "logical_or",
        "logical_xor",
        "logical_not",
    ),
    "integer and bit operations (exact)": (
        "bitwise_and",
        "bitwise_or",
        "bitwise_xor",
        "bitwise_not",
        "bitwise_left_shift",
        "bitwise_right_shift",
        "__and__",
        "__or__",
        "__xor__",
        "__lshift__",
        "__rshift__",
        "__iand__",
        "__ior__",
        "__ixor__",
        "__ilshift__",
        "__irshift__",
        "gcd",
        "lcm",
    ),
    "a copy or a cast (one correctly rounded conversion per element)": (
        "clone",
        "copy",
        "_copy_from",
        "_copy_from_and_resize",
        "_to_copy",
        "to",
        "fill",
        "zero",
        "detach",
        "alias",
        "lift_fresh",
        "lift_fresh_copy",
        "contiguous",
    ),
}
NATIVE_POINTWISE: dict[str, str] = {
    base: why for why, bases in _POINTWISE_GROUPS.items() for base in bases
}
