import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# every kernel splits even tiny work across the threads it is given, so the thread
# axes of the tests run multithreaded paths on their small shapes
os.environ.setdefault("SAMEBITS_MIN_PARALLEL_WORK", "0")

import pytest  # noqa: E402

pytest_plugins = ["pytester"]
import torch  # noqa: E402

from samebits import _native  # noqa: E402

# Tolerances for comparing a kernel with its float64 reference, never for invariance.
TOL = {
    torch.float32: dict(rtol=1e-4, atol=1e-4),
    torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
}
DTYPES = [torch.float32, torch.bfloat16]
THREADS = [1, 2, 3, 5]  # 5 is more than this machine's cores
BATCH_SIZES = [1, 2, 3, 5, 8, 13]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).contiguous().view(torch.uint8)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality, sign of zero and NaN payloads included."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))


@pytest.fixture(params=_native.native_info()["available"])
def isa(request):
    """Each test runs on every ISA path this CPU has."""
    with _native.use_isa(request.param):
        yield request.param


@pytest.fixture
def threads():
    """Set torch's thread count inside a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)
