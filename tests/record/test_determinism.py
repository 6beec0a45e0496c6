import random

import numpy as np
import pytest
import torch

import samebits


def snapshot():
    return {
        "det": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_det": torch.backends.cudnn.deterministic,
        "cudnn_bench": torch.backends.cudnn.benchmark,
        "tf32": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "prec": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
        "mode": samebits.is_batch_invariant(),
        "py": random.getstate(),
        "np": np.random.get_state()[1].tolist(),
        "torch": torch.random.get_rng_state().tolist(),
    }


@pytest.fixture
def changed_flags():
    """Start from non-default flags so restoring is observable."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.set_float32_matmul_precision("medium")
    yield
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def test_sets_everything_and_restores_every_flag(changed_flags, threads):
    threads(2)
    random.random()
    before = snapshot()
    with samebits.deterministic(seed=7, threads=1):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_num_threads() == 1 and samebits.is_batch_invariant()
        draws = (random.random(), float(np.random.rand()), float(torch.rand(())))
    assert snapshot() == before
    with samebits.deterministic(seed=7):
        assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == draws


def test_restores_on_exception(changed_flags):
    before = snapshot()
    with pytest.raises(KeyError):
        with samebits.deterministic(1):
            raise KeyError("x")
    assert snapshot() == before


def test_callable_once_for_a_program_and_restore(changed_flags):
    before = snapshot()
    d = samebits.deterministic(3, batch_invariant=False)
    assert torch.are_deterministic_algorithms_enabled() and not samebits.is_batch_invariant()
    d.restore()
    d.restore()  # idempotent
    assert snapshot() == before


def test_bad_threads():
    with pytest.raises(ValueError, match="threads=0"):
        samebits.deterministic(threads=0)


def test_a_bare_call_sets_the_flags_but_leaves_no_thread_in_the_mode(changed_flags):
    before = snapshot()
    d = samebits.deterministic(3)  # on its own line, as a script would
    try:
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.get_float32_matmul_precision() == "highest"
        assert not samebits.is_batch_invariant()  # the mode is per thread: only in `with`
        with d:
            assert samebits.is_batch_invariant()
        assert not samebits.is_batch_invariant()
    finally:
        d.restore()
    assert snapshot() == before
