"""Run-time ISA dispatch: every kernel path this CPU has, times every torch dispatch
level it has, gives one set of bits on the op grid, a Llama and the real MiniLM."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from samebits import _native
from samebits._native import _build
from samebits.errors import NativeBuildError

ROOT = Path(__file__).resolve().parents[2]
ATEN_LEVELS = ("default", "avx2", "avx512")


def aten_levels() -> list[str]:
    """torch's dispatch levels up to the one it picks on this CPU."""
    best = torch.backends.cpu.get_cpu_capability().lower()
    if best not in ATEN_LEVELS:
        return ["default"]
    return list(ATEN_LEVELS[: ATEN_LEVELS.index(best) + 1])


def probe(isa: str, aten: str) -> dict:
    env = {**os.environ, "SAMEBITS_ISA": isa, "ATEN_CPU_CAPABILITY": aten}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.native.isa_probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_isa_path_and_torch_level_gives_the_same_bits():
    paths = _native.native_info()["available"]
    combos = [(isa, aten) for isa in paths for aten in aten_levels()]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: probe(*c), combos))
    first = results[0]["hashes"]
    assert len(first) > 50
    for (isa, aten), res in zip(combos, results, strict=True):
        assert res["isa"] == isa, (isa, res["isa"])  # native_info reports the path asked for
        assert res["aten"].lower() == aten
        differ = sorted(k for k in first if res["hashes"][k] != first[k])
        assert not differ, f"SAMEBITS_ISA={isa} ATEN_CPU_CAPABILITY={aten}: {differ}"


def test_native_info_fields():
    info = _native.native_info()
    assert info["isa"] in info["available"]
    assert info["available"][0] == "portable"
    assert info["source"] in ("prebuilt", "cache")
    assert Path(info["path"]).is_file()
    assert len(info["build"].split("-")) == 2


def test_auto_picks_the_best_path():
    info = _native.native_info()
    if info["requested"] == "auto":
        assert info["isa"] == info["available"][-1]


def test_unknown_path_is_refused(monkeypatch):
    monkeypatch.setenv("SAMEBITS_ISA", "sse9")
    with pytest.raises(NativeBuildError, match=rf"SAMEBITS_ISA='sse9'.*{', '.join(_native.ISAS)}"):
        _native._requested()


def test_a_path_the_cpu_lacks_names_the_missing_flags():
    with pytest.raises(NativeBuildError, match="avx512f, avx512dq.*os_avx512"):
        _native._check_path("avx512", frozenset({"avx", "avx2", "fma", "f16c", "os_avx"}))
    with pytest.raises(NativeBuildError, match="'neon' kernel path needs.*fp, asimd"):
        _native._check_path("neon", frozenset())


def test_paths_follow_the_architecture():
    """x86-64 builds portable, avx2, avx512, avx512_bf16, amx and amx_sim; aarch64
    builds portable (scalar: Advanced SIMD off) and neon, chosen from HWCAP."""
    info = _native.native_info()
    assert _build.built_paths("aarch64") == ("portable", "neon")
    assert _build.built_paths("x86_64")[:4] == ("portable", "avx2", "avx512", "avx512_bf16")
    assert "-march=armv8-a+nosimd" in _build.flags("aarch64", "portable")
    for arch in _build.ARCH_PATHS:
        for isa in _build.built_paths(arch):
            assert "-ffp-contract=off" in _build.flags(arch, isa)
    if _build.host_arch() == "aarch64":
        assert {"fp", "asimd"} <= set(info["cpu_features"])
        assert info["available"] == ["portable", "neon"]
    else:
        assert info["available"] == [p for p in _native.ISAS if p in info["available"]]
        assert "neon" not in info["available"]
    _native._check_path("portable", frozenset())  # needs nothing


def test_requested_path_not_on_this_cpu_fails_at_load():
    """In a subprocess: a path this CPU lacks is refused when the library loads."""
    missing = [isa for isa in _native.ISAS if isa not in _native.native_info()["available"]]
    if not missing:
        pytest.skip("this CPU runs every path")
    env = {**os.environ, "SAMEBITS_ISA": missing[0]}
    code = "import samebits._native as n; n.lib()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "NativeBuildError" in proc.stderr
    assert "needs CPU features this CPU lacks" in proc.stderr


def test_use_isa_switches_this_threads_path():
    for isa in _native.native_info()["available"]:
        with _native.use_isa(isa):
            assert _native.lib().isa == isa
    assert _native.lib().isa == _native.native_info()["isa"]


def test_samebits_env_prints_the_kernel_path():
    code = "import sys; from samebits.cli import main; sys.exit(main(['env']))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = _native.native_info()
    assert f"kernels: {info['isa']} path" in proc.stdout
    assert info["build"] in proc.stdout
