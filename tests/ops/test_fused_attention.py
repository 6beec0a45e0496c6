"""nn.MultiheadAttention and nn.TransformerEncoder in eval take torch's fused fast
paths (and nested tensors with a padding mask); under the mode they run, stay close
to native, and give every sequence its bits alone."""

import pytest
import torch
import torch.nn as nn

import samebits
from samebits import _native
from tests.conftest import TOL, same_bits

E, HEADS = 16, 4
LENGTHS = [7, 3, 5, 1, 7, 4]


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def padded(idx, dtype=torch.float32):
    """Right-padded batch of the sequences ``idx`` and its key padding mask (True = pad)."""
    n = max(LENGTHS[i] for i in idx)
    x = torch.zeros(len(idx), n, E, dtype=dtype)
    pad = torch.ones(len(idx), n, dtype=torch.bool)
    for row, i in enumerate(idx):
        x[row, : LENGTHS[i]] = rnd(LENGTHS[i], E, dtype=dtype, seed=20 + i)
        pad[row, : LENGTHS[i]] = False
    return x, pad


def mha_model(dtype):
    torch.manual_seed(0)
    return nn.MultiheadAttention(E, HEADS, batch_first=True).eval().to(dtype)


def encoder(dtype, norm_first=False, activation="relu"):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        E, HEADS, 32, batch_first=True, norm_first=norm_first, activation=activation
    )
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=not norm_first).eval().to(dtype)


def test_fast_paths_are_taken_under_the_mode():
    assert torch.backends.mha.get_fastpath_enabled()
    x, pad = padded([0, 1])
    with torch.profiler.profile() as prof, samebits.batch_invariant(), torch.no_grad():
        mha_model(torch.float32)(x, x, x, key_padding_mask=pad)
        encoder(torch.float32)(x, src_key_padding_mask=pad)
    names = {e.name for e in prof.events()}
    assert {"aten::_native_multi_head_attention", "aten::_transformer_encoder_layer_fwd"} <= names


@pytest.mark.parametrize("need_weights,average", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_mha_fast_path_invariant_with_padding_masks(dtype, need_weights, average, threads):
    m = mha_model(dtype)
    with samebits.batch_invariant(), torch.no_grad():
        threads(1)
        alone = []
        for i in range(len(LENGTHS)):
            x, _ = padded([i], dtype)
            alone.append(m(x, x, x, need_weights=need_weights, average_attn_weights=average))
        for nthreads, idx in ((2, [5, 0, 3, 1, 4, 2]), (3, [2, 0])):
            threads(nthreads)
            x, pad = padded(idx, dtype)
            out, w = m(x, x, x, key_padding_mask=pad, need_weights=need_weights,
                       average_attn_weights=average)  # fmt: skip
            assert _native.last_kernel_threads() == nthreads
            for row, i in enumerate(idx):
                n = LENGTHS[i]
                assert same_bits(out[row, :n], alone[i][0][0]), (i, nthreads)
                if need_weights:
                    assert same_bits(w[row, ..., :n, :n], alone[i][1][0]), (i, nthreads)


@pytest.mark.parametrize(
    "norm_first,activation", [(False, "relu"), (True, "gelu")], ids=["post_relu", "pre_gelu"]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_transformer_encoder_fast_path_invariant(dtype, norm_first, activation, threads):
    m = encoder(dtype, norm_first, activation)
    with samebits.batch_invariant(), torch.no_grad():
        threads(1)
        alone = [m(padded([i], dtype)[0]) for i in range(len(LENGTHS))]
        for nthreads, idx in ((2, [5, 0, 3, 1, 4, 2]), (3, [1, 4])):
            threads(nthreads)
            x, pad = padded(idx, dtype)
            out = m(x, src_key_padding_mask=pad)
            for row, i in enumerate(idx):
                assert same_bits(out[row, : LENGTHS[i]], alone[i][0]), (i, nthreads)


def test_fast_paths_stay_close_to_native():
    x, pad = padded([0, 1, 2])
    m, enc = mha_model(torch.float32), encoder(torch.float32)
    with torch.no_grad():
        native = (m(x, x, x, key_padding_mask=pad), enc(x, src_key_padding_mask=pad))
        with samebits.batch_invariant():
            ours = (m(x, x, x, key_padding_mask=pad), enc(x, src_key_padding_mask=pad))
    real = ~pad
    torch.testing.assert_close(ours[0][0][real], native[0][0][real], **TOL[torch.float32])
    torch.testing.assert_close(ours[0][1], native[0][1], **TOL[torch.float32])
    torch.testing.assert_close(ours[1][real], native[1][real], **TOL[torch.float32])


def test_mha_with_attn_mask_and_cross_attention():
    m = mha_model(torch.float32)
    q, kv = rnd(3, 5, E, seed=1), rnd(3, 6, E, seed=2)
    causal = torch.ones(5, 6, dtype=torch.bool).triu(1)
    with torch.no_grad():
        native = m(q, kv, kv, attn_mask=causal)
        with samebits.batch_invariant():
            ours = m(q, kv, kv, attn_mask=causal)
            one = m(q[1:2], kv[1:2], kv[1:2], attn_mask=causal)
    torch.testing.assert_close(ours[0], native[0], **TOL[torch.float32])
    assert same_bits(one[0], ours[0][1:2])
