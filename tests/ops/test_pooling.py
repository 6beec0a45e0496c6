import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits import _native
from samebits.ops import pooling
from tests.conftest import TOL, same_bits


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# name -> (nd, item shape, args of F.avg_poolNd / F.adaptive_avg_poolNd)
AVG = {
    "1d": (1, (3, 17), dict(kernel_size=3, stride=2, padding=1)),
    "2d": (2, (3, 11, 10), dict(kernel_size=3, stride=2, padding=1)),
    "2d_ceil_nopad_count": (
        2,
        (2, 9, 10),
        dict(kernel_size=(3, 2), stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    ),
    "2d_divisor": (2, (2, 8, 8), dict(kernel_size=2, divisor_override=3)),
    "3d": (3, (2, 5, 6, 7), dict(kernel_size=2, stride=(1, 2, 2), padding=1, ceil_mode=True)),
    "2d_kernel_beyond_input": (2, (4, 3, 2), dict(kernel_size=640, ceil_mode=True)),
    "2d_ceil_window_past_end": (
        2,
        (2, 7, 7),
        dict(kernel_size=4, stride=3, padding=1, ceil_mode=True),
    ),
}
ADAPTIVE = {
    "1d_uneven": (1, (3, 17), 5),
    "2d_7": (2, (3, 15, 13), 7),
    "2d_1x1": (2, (4, 9, 9), 1),
    "2d_rect": (2, (2, 10, 11), (3, 4)),
    "3d": (3, (2, 5, 7, 6), (2, 3, 2)),
}


def call(kind, name, x):
    if kind == "avg":
        nd, _, kw = AVG[name]
        return (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1](x, **kw)
    nd, _, size = ADAPTIVE[name]
    return (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[nd - 1](x, size)


CASES = [("avg", n) for n in sorted(AVG)] + [("adaptive", n) for n in sorted(ADAPTIVE)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind,name", CASES)
def test_pooling_matches_float64_reference(kind, name, dtype):
    item = (AVG if kind == "avg" else ADAPTIVE)[name][1]
    x = rnd(3, *item, seed=1).to(dtype)
    with samebits.batch_invariant():
        out = call(kind, name, x)
    ref = call(kind, name, x.double()).to(dtype)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind,name", CASES)
def test_pooling_rows_invariant(kind, name, dtype, threads):
    item = (AVG if kind == "avg" else ADAPTIVE)[name][1]
    items = rnd(8, *item, seed=2).to(dtype)
    with samebits.batch_invariant():
        threads(1)
        alone = [call(kind, name, items[i : i + 1]) for i in range(8)]
        for nthreads, bs in ((2, 8), (3, 3)):
            threads(nthreads)
            perm = torch.randperm(8, generator=torch.Generator().manual_seed(bs))[:bs]
            out = call(kind, name, items[perm])
            for row, i in enumerate(perm.tolist()):
                assert same_bits(out[row : row + 1], alone[i]), (name, bs, nthreads)


def test_pooling_runs_threaded_kernels(threads):
    threads(2)
    with samebits.batch_invariant():
        F.avg_pool2d(rnd(4, 3, 16, 16), 2)
    assert _native.last_kernel_threads() == 2


def test_unbatched_avg_pool_equals_batched_row():
    x = rnd(3, 2, 9, 9)
    with samebits.batch_invariant():
        assert same_bits(F.avg_pool2d(x[1], 3, 2, 1), F.avg_pool2d(x, 3, 2, 1)[1])
        assert same_bits(F.adaptive_avg_pool2d(x[1], 4), F.adaptive_avg_pool2d(x, 4)[1])


def test_reference_helpers_agree_with_torch():
    x = rnd(2, 3, 8, 8)
    torch.testing.assert_close(pooling._reference_avg_pool(x, 2, 2), F.avg_pool2d(x, 2))
    torch.testing.assert_close(pooling._reference_adaptive(x, 2, 3), F.adaptive_avg_pool2d(x, 3))
