"""``samebits.deterministic()``: seed everything, pin the flags; as a context manager, enter the mode."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from samebits._mode import batch_invariant as _batch_invariant


class deterministic:
    """Seed the Python, numpy and torch RNGs; enable torch's deterministic
    algorithms; turn off TF32 and cudnn benchmarking; optionally fix the thread
    count; and, as a context manager, enter ``batch_invariant()``.

    Called bare (``samebits.deterministic()`` on its own line) it applies the seeds
    and the process-wide flags at once, for the whole program, and does not enter
    the mode: the mode is per thread, and a bare call would leave the calling thread
    in it with nothing to end it. Used as ``with samebits.deterministic():`` it also
    enters ``batch_invariant()`` in this thread (``batch_invariant=False`` skips
    that), and on exit, exceptions included, leaves the mode and restores every
    setting it changed. ``restore()`` undoes a bare call.
    """

    def __init__(
        self, seed: int = 0, *, batch_invariant: bool = True, threads: int | None = None
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads={threads}: expected a positive thread count")
        self.seed, self.batch_invariant, self.threads = int(seed), batch_invariant, threads
        self._saved: dict[str, Any] | None = None
        self._mode: _batch_invariant | None = None
        self._apply()  # the process-wide settings, now; the mode waits for __enter__

    def _apply(self) -> None:
        self._saved = {
            "python_rng": random.getstate(),
            "numpy_rng": np.random.get_state(),
            "torch_rng": torch.random.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "matmul_precision": torch.get_float32_matmul_precision(),
            "threads": torch.get_num_threads(),
            "cublas_env": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        }
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def restore(self) -> None:
        """Undo everything this call changed (a no-op if already restored)."""
        s = self._saved
        if s is None:
            return
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        random.setstate(s["python_rng"])
        np.random.set_state(s["numpy_rng"])
        torch.random.set_rng_state(s["torch_rng"])
        if s["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(s["cuda_rng"])
        torch.use_deterministic_algorithms(
            s["deterministic"], warn_only=s["deterministic_warn_only"]
        )
        torch.backends.cudnn.deterministic = s["cudnn_deterministic"]
        torch.backends.cudnn.benchmark = s["cudnn_benchmark"]
        torch.backends.cuda.matmul.allow_tf32 = s["tf32_matmul"]
        torch.backends.cudnn.allow_tf32 = s["tf32_cudnn"]
        torch.set_float32_matmul_precision(s["matmul_precision"])
        torch.set_num_threads(s["threads"])
        if s["cublas_env"] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = s["cublas_env"]
        self._saved = None

    def __enter__(self) -> deterministic:
        if self._saved is None:  # re-entered after an exit: apply again
            self._apply()
        if self.batch_invariant and self._mode is None:
            self._mode = _batch_invariant()
            self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
