"""The AMX path (gemm_amx.c): bfloat16 x @ W.T on AMX tiles, chosen explicitly.

Where the CPU has AMX, the real path is checked for invariance (rows alone and in
batches of every size, one and two threads) and against a float64 reference. Everywhere
with AVX512_BF16, the test double ``amx_sim`` runs the same kernel with each tile
instruction computed in C with the PAIR order's steps, so its outputs must equal the
portable paths' bit for bit: that checks the kernel's data movement (packing, zero
padding, tile placement, transposes, the output map) on CPUs without AMX."""

import os
import subprocess
import sys
import threading

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits import _native
from samebits.errors import NativeBuildError
from samebits.record import fingerprint as fp
from tests.conftest import TOL, same_bits

INFO = _native.native_info()


def _usable(isa: str) -> bool:
    try:
        _native.pop_isa(_native.push_isa(isa))
    except NativeBuildError:
        return False
    return True


HAS_AMX = _usable("amx")  # the CPU, the OS and this build all allow it
CAN_SIM = _usable("amx_sim")
sim_only = pytest.mark.skipif(not CAN_SIM, reason="the AMX test double needs AVX-512")
amx_only = pytest.mark.skipif(not HAS_AMX, reason="this CPU (or OS) has no AMX")


def run(isa: str, fn, *args):
    with _native.use_isa(isa), samebits.batch_invariant():
        return fn(*args)


def linear_case(M, N, K, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, K, generator=g).bfloat16()
    w = torch.randn(N, K, generator=g).bfloat16()
    b = torch.randn(N, generator=g).bfloat16() if bias else None
    return x, w, b


# M, N, K: every tail of the kernel (rows past 16 / 32 / 128, columns past 16 / 32 /
# 128, K past 32 and past the 512 block, odd K, K below one chunk)
SHAPES = [
    (1, 16, 32),
    (1, 1, 1),
    (2, 7, 2),
    (3, 40, 100),
    (17, 33, 64),
    (33, 17, 31),
    (40, 300, 700),
    (130, 50, 96),
    (5, 129, 1030),
    (130, 300, 1100),  # two row tasks, column ranges of several 128 blocks, three k blocks
    (257, 520, 513),
]


@sim_only
@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("bias", [False, True])
def test_sim_gives_the_portable_bits(M, N, K, bias, threads):
    x, w, b = linear_case(M, N, K, bias)
    for n in (1, 2):
        threads(n)
        want = run("portable", F.linear, x, w, b)
        got = run("amx_sim", F.linear, x, w, b)
        assert same_bits(got, want), (M, N, K, bias, n)


@sim_only
def test_sim_float32_output_and_batched_products(threads):
    """bf16 x bf16 -> float32 (sb_gemm with a float32 C) and a batch of products
    whose B is K-contiguous (q @ k.T): per batch item offsets, two threads."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 37, 70, generator=g).bfloat16()
    b = torch.randn(3, 45, 70, generator=g).bfloat16()
    threads(2)
    want = run("portable", torch.matmul, a, b.transpose(1, 2))
    got = run("amx_sim", torch.matmul, a, b.transpose(1, 2))
    assert _native.last_kernel_threads() == 2
    assert same_bits(got, want)
    assert same_bits(run("amx_sim", _bmm, a, b), run("portable", _bmm, a, b))


def _bmm(a, b):
    from samebits.ops.matmul import bmm_f32

    return bmm_f32(a, b.transpose(1, 2))


@sim_only
def test_sim_runs_the_tile_kernel():
    """Proof that bfloat16 linear reaches the tile kernel on the AMX paths: a tile
    chunk pads K to 32 with zero pairs, and 0 * 0 added to a flushed -0 gives +0,
    where the PAIR order (K = 2, one pair) stops at -0."""
    x = torch.tensor([[2.0**-70, 0.0]]).bfloat16()
    w = torch.tensor([[-(2.0**-70), 0.0]]).bfloat16()
    ref = run("portable", F.linear, x, w)
    sim = run("amx_sim", F.linear, x, w)
    assert ref.item() == 0 and torch.signbit(ref).item()
    assert sim.item() == 0 and not torch.signbit(sim).item()


@sim_only
def test_sim_rows_do_not_depend_on_the_batch(threads):
    x, w, b = linear_case(150, 70, 200, True, seed=3)
    threads(2)
    full = run("amx_sim", F.linear, x, w, b)
    for i in (0, 17, 64, 149):
        for n in (1, 2):
            threads(n)
            assert same_bits(run("amx_sim", F.linear, x[i : i + 1], w, b), full[i : i + 1])
    sub = run("amx_sim", F.linear, x[31:96], w, b)
    assert same_bits(sub, full[31:96])


@sim_only
def test_sim_convolutions_give_the_portable_bits():
    """Pointwise convolutions of channels-last inputs take the tile kernel (rows are
    positions, one run); 3x3 ones (rows in kernel-row runs) and K-major ones keep
    the PAIR kernel on the AMX path. Every route: the portable bits."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 24, 9, 11, generator=g).bfloat16()
    w1 = torch.randn(40, 24, 1, 1, generator=g).bfloat16()
    w3 = torch.randn(16, 24, 3, 3, generator=g).bfloat16()
    b = torch.randn(40, generator=g).bfloat16()
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        for args in ((inp, w1, b), (inp, w3, None, 1, 1)):
            assert same_bits(run("amx_sim", F.conv2d, *args), run("portable", F.conv2d, *args))


def test_batch_invariant_isa_is_per_thread_and_restored():
    default = _native.lib().isa
    seen = {}

    def other():
        seen["isa"] = _native.lib().isa

    with samebits.batch_invariant(isa="portable"):
        assert _native.lib().isa == "portable"
        with samebits.batch_invariant(isa=default):
            assert _native.lib().isa == default
        assert _native.lib().isa == "portable"
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen["isa"] == default and _native.lib().isa == default
    with pytest.raises(TypeError, match="isa must be"):
        samebits.batch_invariant(isa=3)


MISSING = [f for f in _native.ISA_NEEDS["amx"] if f not in INFO["cpu_features"]]


@pytest.mark.skipif(not MISSING, reason="this CPU has every feature the amx path needs")
def test_amx_refused_with_the_missing_features():
    missing = MISSING
    with pytest.raises(NativeBuildError, match="needs CPU features this CPU lacks: " + missing[0]):
        with samebits.batch_invariant(isa="amx"):
            pass
    assert not samebits.is_batch_invariant() and _native.lib().isa == INFO["isa"]
    env = dict(os.environ, SAMEBITS_ISA="amx")
    out = subprocess.run(
        [sys.executable, "-c", "import samebits; samebits.native_info()"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "'amx' kernel path needs CPU features" in out.stderr


def test_a_path_the_toolchain_cannot_build_is_left_out():
    """An optional object (amx: an assembler without the AMX mnemonics) that fails to
    compile is dropped and the rest still builds; a required one that fails raises."""
    from samebits._native import _build

    ok = [sys.executable, "-c", "pass"]
    bad = [sys.executable, "-c", "raise SystemExit(1)"]
    assert _build._run([ok, bad], optional=(bad,)) == [bad]
    with pytest.raises(_build.BuildError, match="building samebits kernels failed"):
        _build._run([list(bad), ok], optional=(bad,))
    assert _build.OPTIONAL == ("amx",)


def test_fingerprint_names_whether_the_bits_are_portable():
    assert fp.affects_bits("kernels.bits") and fp.affects_bits("kernels.bits", under_mode=True)
    with samebits.batch_invariant():
        assert fp.fingerprint()["kernels"]["bits"] == "portable"


@amx_only
def test_amx_rows_do_not_depend_on_the_batch_or_threads(threads):
    x, w, b = linear_case(300, 200, 1100, True, seed=5)
    threads(2)
    with samebits.batch_invariant(isa="amx"):
        full = F.linear(x, w, b)
        info = samebits.native_info()
        kern = fp.fingerprint()["kernels"]
        for i in (0, 15, 16, 131, 299):
            for n in (1, 2):
                threads(n)
                assert same_bits(F.linear(x[i : i + 1], w, b), full[i : i + 1])
        for lo, hi in ((0, 7), (5, 40), (100, 300)):
            assert same_bits(F.linear(x[lo:hi], w, b), full[lo:hi])
    assert info["isa"] == "amx" and info["portable"] is False
    assert kern["bits"].startswith("amx on ")
    ref = (x.double() @ w.double().T + b.double()).float()
    torch.testing.assert_close(full.float(), ref, **TOL[torch.bfloat16])


@amx_only
def test_amx_minilm_bfloat16_is_invariant(threads):
    from samebits.models import load_sentence_model

    model = load_sentence_model().to(torch.bfloat16)
    texts = ["hello", "The quick brown fox jumps over the lazy dog.", "x", "Short text."]
    enc = lambda t, bs: model.encode(  # noqa: E731
        t, batch_size=bs, convert_to_tensor=True, show_progress_bar=False
    )
    with samebits.batch_invariant(isa="amx"):
        threads(1)
        alone = [enc([t], 1)[0] for t in texts]
        threads(2)
        batched = enc(texts[::-1], 4)
    for i, a in enumerate(alone):
        assert same_bits(batched[len(texts) - 1 - i], a)


@sim_only
def test_sim_llama_forward_gives_the_portable_bits():
    """A whole bfloat16 decoder (tiny Llama from its config, a padded batch): every
    linear layer through the tile kernel's data movement, the rest as on the portable
    paths; logits equal bit for bit."""
    import transformers as T

    torch.manual_seed(0)
    cfg = T.LlamaConfig(
        vocab_size=100, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    model = T.LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    ids = torch.randint(3, 100, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding
    with torch.no_grad():
        want = run("portable", lambda: model(input_ids=ids, attention_mask=mask).logits)
        got = run("amx_sim", lambda: model(input_ids=ids, attention_mask=mask).logits)
    assert same_bits(got, want)
