"""The golden bits: the workloads of tests/golden/workloads.py under the mode must give
the SHA-256 hashes committed in tests/golden/hashes.json on every machine, every kernel
path and every torch version in the supported range. A difference means this machine,
this torch or this change computes other bits than the ones written down: find out
why; regenerate the file only for a deliberate change of order or formula, and say so
in the commit (see the workloads module)."""

import json

import pytest

from samebits import _native
from tests.golden import workloads

COMMITTED = json.loads(workloads.HASHES.read_text())


def _compare(got: dict[str, str]) -> dict[str, tuple[str, str]]:
    want = COMMITTED["hashes"]
    return {k: (want.get(k, "-")[:16], v[:16]) for k, v in got.items() if want.get(k) != v}


@pytest.fixture(scope="module")
def computed() -> dict[str, dict[str, str]]:
    return {}


def _run(computed, name) -> dict[str, str]:
    if name not in computed:
        computed[name] = workloads.WORKLOADS[name]()
    return computed[name]


@pytest.mark.parametrize("name", sorted(workloads.WORKLOADS))
def test_workload_has_the_committed_bits(name, computed):
    got = _run(computed, name)
    assert got, name
    differ = _compare(got)
    assert not differ, (
        f"{name}: bits differ from tests/golden/hashes.json (made on "
        f"{COMMITTED['made_on']}; this machine: {workloads.machine()}): {differ}"
    )


def test_every_kernel_path_gives_the_committed_op_bits():
    for path in _native.native_info()["available"]:
        with _native.use_isa(path):
            differ = _compare(workloads.op_grid())
        assert not differ, f"kernel path {path}: {differ}"


def test_every_committed_hash_has_a_workload(computed):
    names = set()
    for name in workloads.WORKLOADS:
        names |= set(_run(computed, name))
    assert set(COMMITTED["hashes"]) == names
