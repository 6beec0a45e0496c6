"""`pip wheel .` makes a platform wheel carrying the compiled kernels and the package's
data; installed into a fresh environment with no C compiler and an empty cache, it runs
the mode with the same bits as this (make's) install."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import samebits

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import hashlib, json, sys, numpy as np, torch, torch.nn.functional as F
import samebits
from samebits import _native
x = torch.from_numpy(np.random.default_rng(1).standard_normal((9, 200), dtype=np.float32))
w = torch.from_numpy(np.random.default_rng(2).standard_normal((70, 200), dtype=np.float32))
with samebits.batch_invariant():
    y = F.softmax(F.linear(x, w), -1)
info = _native.native_info()
print(json.dumps({"hash": hashlib.sha256(y.numpy().tobytes()).hexdigest(),
                  "file": samebits.__file__, "source": info["source"], "isa": info["isa"]}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the build needs setuptools only (no torch), and this keeps
    # the test offline; `pip wheel .` with isolation runs the same setup.py
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("samebits-*.whl")
    return whl


def test_wheel_is_a_platform_wheel_with_kernels_and_data(wheel):
    assert wheel.name.endswith(f"-py3-none-{sysconfig.get_platform().replace('-', '_')}.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "samebits/_native/libsamebits_kernels.so" in names
    assert "samebits/data/demo_texts.txt" in names
    native = ROOT / "samebits" / "_native"
    sources = {p.name for p in [*native.glob("*.[ch]"), *native.glob("*.[ch]pp")]}
    assert {f"samebits/_native/{s}" for s in sources} <= names
    assert not any(n.endswith(".o") for n in names)


def test_wheel_runs_without_a_compiler_or_cache(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    # torch and numpy from this environment's site-packages (a plain path entry: its
    # .pth files, samebits' editable hook among them, are not read)
    site = Path(torch.__file__).parents[1]
    target = Path(
        subprocess.check_output(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (target / "deps.pth").write_text(f"{site}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    env = {
        "PATH": str(env_dir / "bin"),  # no cc, gcc or anything else
        "CC": str(tmp_path / "no-such-compiler"),
        "SAMEBITS_CACHE": str(cache),
        "HOME": str(tmp_path),
    }
    assert shutil.which("cc", path=env["PATH"]) is None
    proc = subprocess.run([py, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(target)), got["file"]  # the wheel's samebits ran
    assert got["source"] == "prebuilt"
    # nothing compiled (the cache holds at most the mode's op plan, plan-*.json)
    assert [p.name for p in cache.iterdir() if not p.name.startswith("plan-")] == []

    x = torch.from_numpy(np.random.default_rng(1).standard_normal((9, 200), dtype=np.float32))
    w = torch.from_numpy(np.random.default_rng(2).standard_normal((70, 200), dtype=np.float32))
    with samebits.batch_invariant():
        y = F.softmax(F.linear(x, w), -1)
    assert got["hash"] == hashlib.sha256(y.numpy().tobytes()).hexdigest()


def test_missing_compiler_is_a_clear_error(tmp_path):
    """Where a build is needed (this checkout has no prebuilt library) and there is no
    compiler, the error says what to install or set."""
    if (ROOT / "samebits" / "_native" / "libsamebits_kernels.so").exists():
        pytest.skip("a prebuilt library sits in this checkout")
    env = {**os.environ, "CC": str(tmp_path / "nope"), "SAMEBITS_CACHE": str(tmp_path / "c")}
    code = "import samebits._native as n; n.lib()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "NativeBuildError" in proc.stderr and "install gcc" in proc.stderr
    assert "CC=" in proc.stderr


def test_unwritable_cache_is_a_clear_error(tmp_path):
    if (ROOT / "samebits" / "_native" / "libsamebits_kernels.so").exists():
        pytest.skip("a prebuilt library sits in this checkout")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = {**os.environ, "SAMEBITS_CACHE": str(blocker / "cache")}
    code = "import samebits._native as n; n.lib()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "NativeBuildError" in proc.stderr and "set SAMEBITS_CACHE" in proc.stderr


def test_cache_key_covers_compiler_version_and_flags(monkeypatch):
    from samebits._native import _build

    a = _build.build_id("gcc (Debian 12.2.0) 12.2.0 (x86_64-linux-gnu)")
    assert a != _build.build_id("gcc (Debian 13.1.0) 13.1.0 (x86_64-linux-gnu)")
    monkeypatch.setitem(_build.ISA_FLAGS, "avx2", ("-mavx2",))
    assert a != _build.build_id("gcc (Debian 12.2.0) 12.2.0 (x86_64-linux-gnu)")
    assert a.split("-")[0] == _build.source_hash()


def test_the_compiler_version_is_kept_under_the_binarys_stat(tmp_path):
    """The version line is asked of the compiler once and kept under its path, size and
    mtime; a changed binary is asked again."""
    from samebits._native import _build

    log = tmp_path / "calls"
    cc = tmp_path / "fakecc"
    cc.write_text(
        f'#!/bin/sh\necho "$1" >> {log}\n'
        'if [ "$1" = -dumpmachine ]; then echo x86_64-linux-gnu; else echo "fakecc 1.0"; fi\n'
    )
    cc.chmod(0o755)
    cache = tmp_path / "cache"
    assert _build.compiler_version(str(cc), cache) == "fakecc 1.0 (x86_64-linux-gnu)"
    assert _build.compiler_version(str(cc), cache) == "fakecc 1.0 (x86_64-linux-gnu)"
    assert log.read_text().split() == ["--version", "-dumpmachine"]  # asked once
    cc.write_text(cc.read_text().replace("fakecc 1.0", "fakecc 2.0") + "\n")
    assert _build.compiler_version(str(cc), cache) == "fakecc 2.0 (x86_64-linux-gnu)"
    assert len(log.read_text().split()) == 4
    assert _build.compiler_version(str(cc)) == "fakecc 2.0 (x86_64-linux-gnu)"  # no cache
