"""The library's parallel regions run in torch's OpenMP runtime, split by the team they
really get, and the small-work threshold can be lowered so tests run several threads."""

import math
import os
import subprocess
import sys

import torch

from samebits import _native

PROVIDER = """
import ctypes, os, torch
from samebits import _native
_native.lib()
# the library links no OpenMP runtime: its GOMP_* imports bind in the global scope
libc = ctypes.CDLL(None)
class DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]
addr = ctypes.cast(libc.GOMP_parallel, ctypes.c_void_p)
info = DlInfo()
assert libc.dladdr(addr, ctypes.byref(info))
maps = sorted({l.split()[-1] for l in open("/proc/self/maps") if "libgomp" in l})
print(os.path.realpath(info.fname.decode()))
print(os.path.realpath(os.path.dirname(torch.__file__)))
print(len(maps))
"""


def test_one_openmp_runtime_torchs():
    """In a process that imports only torch and samebits, the library's GOMP calls go to
    torch's libgomp and no second runtime is mapped. (Other packages may bring their own
    libgomp into a process, e.g. scikit-learn; that is theirs, so the check runs alone.)"""
    proc = subprocess.run([sys.executable, "-c", PROVIDER], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    provider, torch_dir, n_maps = proc.stdout.split()
    assert provider.startswith(torch_dir), provider
    assert n_maps == "1"


def test_torch_set_num_threads_sizes_the_librarys_regions(threads):
    for k in (1, 2, 3, 5):
        threads(k)
        # a region that asks for no size gets the runtime's default, which only
        # torch.set_num_threads set: one runtime, one setting
        assert _native.parallel_team(0) == k
        assert _native.parallel_team(torch.get_num_threads()) == k


SCRIPT = """
import math, torch, samebits
from samebits import _native
torch.set_num_threads(2)
x = torch.from_numpy(__import__("numpy").random.default_rng(5).standard_normal(2_000_000) * 1e4 + 3e3)
print(_native.parallel_team(2), float(samebits.exact_sum(x)), math.fsum(x.tolist()))
"""


def test_exact_sum_is_right_when_the_team_is_smaller_than_asked():
    """OMP_THREAD_LIMIT=1 gives a region asking for 2 threads only 1: no slice may be lost."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    team, got, want = proc.stdout.split()
    assert team == "1"  # the limit really shrank the team
    assert float(got) == float(want) and math.isfinite(float(want))


def kernel_threads_for_a_small_sum(extra_env: dict) -> str:
    code = (
        "import torch, samebits; from samebits import _native; torch.set_num_threads(3)\n"
        "with samebits.batch_invariant(): torch.ones(4, 16).sum(-1)\n"
        "print(_native.last_kernel_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k != "SAMEBITS_MIN_PARALLEL_WORK"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**env, **extra_env}, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_min_parallel_work_zero_runs_small_shapes_on_several_threads():
    """The grid's thread axis is real: tests/conftest.py sets SAMEBITS_MIN_PARALLEL_WORK=0,
    under which a 64-element sum runs on the 3 threads asked for; by default, on one."""
    assert os.environ.get("SAMEBITS_MIN_PARALLEL_WORK") == "0"
    assert kernel_threads_for_a_small_sum({"SAMEBITS_MIN_PARALLEL_WORK": "0"}) == "3"
    assert kernel_threads_for_a_small_sum({}) == "1"
