"""No silent variance in elementwise ops: every elementwise aten op (tagged pointwise by
torch, or run by samebits' pointwise engine) x float32/bfloat16/float16 x scalar
arguments (0.3, 2.5, -1.5, 1e-3, 2, 0.5, -1, 3) x its functional, in-place and out=
forms x every samebits kernel path this CPU has x every torch dispatch level
(ATEN_CPU_CAPABILITY) this CPU has gives one result, or raises NotInvariantError.
Each row also has the bits it gets computed alone. See tests/pointwise_probe.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from samebits import _native
from tests import pointwise_probe

ROOT = Path(__file__).resolve().parents[1]


def levels() -> list[str]:
    """torch's dispatch levels this CPU runs."""
    feats = set(_native.native_info()["cpu_features"])
    have = ["default"]
    if {"avx2", "fma"} <= feats:
        have.append("avx2")
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= feats:
        have.append("avx512")
    return have


def probe(level: str) -> dict[str, str]:
    env = dict(os.environ, ATEN_CPU_CAPABILITY=level)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.pointwise_probe"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def here() -> dict[str, str]:
    return pointwise_probe.sweep(full=True)


def test_the_sweep_reaches_the_ops_that_leaked(here):
    for case in ("add.Tensor float32 0.3", "add.Scalar bfloat16 0.3", "pow.Tensor_Scalar float32 2.5",
                 "erf float16 0.3", "expm1 float32 0.3", "log1p float32 0.3", "sub.Tensor float16 0.3",
                 "rsub.Tensor bfloat16 0.3", "lgamma float32 0.3"):  # fmt: skip
        assert case in here, case
    assert len(here) > 1000
    computed = [k for k, v in here.items() if v not in ("raises", "n/a")]
    assert len(computed) > 500


def test_every_form_path_and_row_gives_one_result_or_raises(here):
    varies = {k: v for k, v in here.items() if v.startswith("varies")}
    assert not varies, f"elementwise ops that vary under the mode: {varies}"


def test_every_torch_dispatch_level_gives_the_same_results(here):
    for level in levels():
        other = probe(level)
        assert other.keys() == here.keys()
        differ = {k: (here[k], other[k]) for k in here if other[k] != here[k]}
        assert not differ, f"ATEN_CPU_CAPABILITY={level}: {differ}"
